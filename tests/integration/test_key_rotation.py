"""Automatic signing-key rotation, proven on real server processes sharing one store.

Two token processes (SQLite, then PostgreSQL) rotate every few seconds while tokens are
issued by both without pause; every token is checked at once by the SDK's ``Verifier``
and by PyJWT's ``PyJWKClient``, against each process's JWKS, each verifier caching the
JWKS as it normally does (for less time than the keys are published ahead). Nothing
about the run's speed is asserted: the test waits for the events it needs and then checks
what happened against the timeline the store recorded.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarm_oauth.keys import KeyRotator, MasterKey, RotationPolicy, ensure_signing_key
from swarm_oauth.sdk import Verifier
from swarm_oauth.store import KeyRecord, Store, open_store
from tests.support.inprocess import InProcessServer
from tests.support.server import ServerProcess

JWKS = "/.well-known/jwks.json"
ISSUER = "http://tokens.test"
AUDIENCE = "inventory"
# The timeline under test, in seconds.
INTERVAL = 4.0
PUBLISH_AHEAD = 3.0
TOKEN_LIFETIME = 3
UNPUBLISH_MARGIN = 60.0  # the shortest the server accepts
# How long the verifiers cache the JWKS: shorter than PUBLISH_AHEAD, as the defaults
# (300 s caches, 600 s publish-ahead) are.
CACHE_SECONDS = 1.0

Start = Callable[..., ServerProcess]


@dataclass
class Issued:
    """One token, and when the request for it went out and came back."""

    process: str
    token: str
    kid: str
    exp: int
    sent: float
    received: float


@dataclass
class Observations:
    """What the test saw while the processes ran."""

    tokens: list[Issued] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # Every key record the store listed, latest version by kid.
    records: dict[str, KeyRecord] = field(default_factory=dict)
    # Per process and kid: when the kid was first in its JWKS, and first absent after that.
    published: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    unpublished: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))
    lock: threading.Lock = field(default_factory=threading.Lock)


def shared_secrets(tmp_path: Path, database_url: str) -> dict[str, str]:
    """The store and secrets every process of one deployment shares (nothing else)."""
    directory = tmp_path / "secrets"
    directory.mkdir()
    (directory / "master_key").write_text(MasterKey.generate_text())
    (directory / "admin_token").write_text(secrets.token_urlsafe(32))
    return {
        "SWARM_OAUTH_DATABASE_URL": database_url,
        "SWARM_OAUTH_MASTER_KEY_FILE": str(directory / "master_key"),
        "SWARM_OAUTH_ADMIN_TOKEN_FILE": str(directory / "admin_token"),
    }


def start_pair(
    server_factory: Start, tmp_path: Path, database_url: str
) -> dict[str, ServerProcess]:
    """An ``all`` process and a ``tokens`` process on one store, one issuer, rotating."""
    env = shared_secrets(tmp_path, database_url)
    args = [
        "--issuer",
        ISSUER,
        "--token-lifetime",
        str(TOKEN_LIFETIME),
        "--key-rotation-interval",
        f"{INTERVAL:g}s",
        "--key-publish-ahead",
        f"{PUBLISH_AHEAD:g}",  # a bare number is seconds
        "--key-unpublish-margin",
        "1m",
    ]
    return {
        "a": server_factory(data_dir=tmp_path / "a", role="all", env=env, args=args),
        "b": server_factory(data_dir=tmp_path / "b", role="tokens", env=env, args=args),
    }


class Verifiers:
    """The SDK's verifier and PyJWKClient for one process's JWKS."""

    def __init__(self, jwks_url: str) -> None:
        self.sdk = Verifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_url=jwks_url,
            max_age=CACHE_SECONDS,
            refetch_interval=CACHE_SECONDS / 4,
        )
        # PyJWT's own defaults otherwise: an unknown kid refetches at most every 30 s.
        self.pyjwt = jwt.PyJWKClient(jwks_url, lifespan=CACHE_SECONDS)

    def failures(self, token: str) -> list[str]:
        """Why each verifier refused ``token`` (none when both accept it)."""
        found = []
        try:
            self.sdk.verify(token)
        except Exception as exc:
            found.append(f"sdk {type(exc).__name__}: {exc}")
        try:
            key = self.pyjwt.get_signing_key_from_jwt(token)
            jwt.decode(token, key.key, algorithms=["ES256"], audience=AUDIENCE, issuer=ISSUER)
        except Exception as exc:
            found.append(f"PyJWKClient {type(exc).__name__}: {exc}")
        return found


def issue_continuously(
    name: str, server: ServerProcess, secret: str, verifiers: list[Verifiers], seen: Observations
) -> Callable[[threading.Event], None]:
    """A loop that gets a token from ``server`` and has every verifier check it at once."""

    def run(stop: threading.Event) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                sent = time.time()
                response = client.post(
                    "/api/token",
                    data={"grant_type": "client_credentials", "audience": AUDIENCE},
                    auth=("orders", secret),
                )
                received = time.time()
                if response.status_code != 200:
                    with seen.lock:
                        seen.failures.append(f"{name}: token {response.status_code}")
                    continue
                token = response.json()["access_token"]
                problems = [p for v in verifiers for p in v.failures(token)]
                claims = jwt.decode(token, options={"verify_signature": False})
                issued = Issued(
                    name, token, jwt.get_unverified_header(token)["kid"], claims["exp"],
                    sent, received,
                )  # fmt: skip
                with seen.lock:
                    seen.tokens.append(issued)
                    seen.failures.extend(f"{name} {issued.kid}: {p}" for p in problems)
                stop.wait(0.02)

    return run


def observe(
    servers: dict[str, ServerProcess], store: Store, seen: Observations
) -> Callable[[threading.Event], None]:
    """A loop recording each process's JWKS and the store's key records."""

    def run(stop: threading.Event) -> None:
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                records = store.list_keys()
                with seen.lock:
                    seen.records.update((record.kid, record) for record in records)
                for name, server in servers.items():
                    kids = {k["kid"] for k in client.get(f"{server.url}{JWKS}").json()["keys"]}
                    # When the answer arrived: the server decided no later than this (a key
                    # seen published then was published before it), and a key missing from
                    # an answer that arrived before its unpublish_at left too early.
                    now = time.time()
                    with seen.lock:
                        published, unpublished = seen.published[name], seen.unpublished[name]
                        for kid in kids:
                            published.setdefault(kid, now)
                        for kid in published.keys() - kids:
                            unpublished.setdefault(kid, now)
                stop.wait(0.1)

    return run


@contextlib.contextmanager
def running(loops: list[Callable[[threading.Event], None]], seen: Observations) -> Iterator[None]:
    """Run each loop on a thread until the block ends; an exception counts as a failure."""
    stop = threading.Event()

    def guarded(loop: Callable[[threading.Event], None]) -> None:
        try:
            loop(stop)
        except Exception as exc:
            with seen.lock:
                seen.failures.append(f"{type(exc).__name__}: {exc}")
            stop.set()

    threads = [threading.Thread(target=guarded, args=(loop,), daemon=True) for loop in loops]
    for thread in threads:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)


def left_everywhere(seen: Observations, names: Iterable[str]) -> set[str]:
    """The kids that were in the JWKS of every process named and have since left each."""
    with seen.lock:
        return set.intersection(*(set(seen.unpublished[name]) for name in names))


def wait_for(condition: Callable[[], bool], seen: Observations, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert not seen.failures, seen.failures[:10]
        assert time.monotonic() < deadline, f"gave up waiting; keys seen: {list(seen.records)}"
        time.sleep(0.5)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_two_processes_rotate_keys_without_a_verifier_noticing(
    server_factory: Start, tmp_path: Path, database_url: str
) -> None:
    servers = start_pair(server_factory, tmp_path, database_url)
    secret = servers["a"].add_client("orders", audiences=[AUDIENCE])["client_secret"]
    verifiers = [Verifiers(f"{server.url}{JWKS}") for server in servers.values()]
    seen = Observations()
    store = open_store(database_url, tmp_path)
    loops = [
        *(issue_continuously(n, s, secret, verifiers, seen) for n, s in servers.items()),
        observe(servers, store, seen),
    ]
    try:
        with running(loops, seen):
            # Two rotations, and the two keys they replaced gone from every JWKS.
            wait_for(lambda: len(left_everywhere(seen, servers)) >= 2, seen, timeout=200)
    finally:
        store.close()
    stopped_at = time.time()

    # No verifier ever failed on any token, and no token request failed.
    assert not seen.failures, seen.failures[:10]

    # One new key per interval: each key was made by exactly one rotation, no earlier than
    # INTERVAL after its predecessor began to sign (two processes rotating for the same
    # interval would make two keys moments apart); each published ahead, each retiring
    # key leaving the JWKS a token lifetime plus the margin after it stopped signing.
    keys = sorted(seen.records.values(), key=lambda k: k.activates_at)
    assert len(keys) >= 3
    for old, new in itertools.pairwise(keys):
        assert new.created_at >= old.activates_at + INTERVAL
        assert new.activates_at == pytest.approx(new.created_at + PUBLISH_AHEAD)
        assert old.retires_at == new.activates_at
        assert old.unpublish_at == pytest.approx(
            new.activates_at + TOKEN_LIFETIME + UNPUBLISH_MARGIN
        )

    def signing_at(moment: float) -> str:
        (key,) = [k for k in keys if k.signs_at(moment)]
        return key.kid

    by_kid = {key.kid: key for key in keys}
    for name in servers:
        tokens = [t for t in seen.tokens if t.process == name]
        # Each process signed with the key the store's timeline names, the moment it did.
        for token in tokens:
            assert token.kid in {signing_at(token.sent), signing_at(token.received)}
        assert len({t.kid for t in tokens}) >= 3
        # Published before signing, by every process.
        for key in keys[1:]:
            if key.activates_at < stopped_at:
                assert seen.published[name][key.kid] < key.activates_at

    # Retired keys left every JWKS, and only once the last token they signed had expired.
    for kid in left_everywhere(seen, servers):
        last_expiry = max(t.exp for t in seen.tokens if t.kid == kid)
        for name in servers:
            assert seen.unpublished[name][kid] > last_expiry
            assert seen.unpublished[name][kid] >= by_kid[kid].unpublish_at


# -- one process, in this process ---------------------------------------------------------


def test_the_rotator_rotates_once_when_due(tmp_path: Path) -> None:
    store = open_store(None, tmp_path)
    store.migrate()
    master = MasterKey.from_text(MasterKey.generate_text())
    start = time.time()
    ensure_signing_key(store, master, "ES256", ISSUER, start)
    policy = RotationPolicy(
        interval=100, publish_ahead=10, alg="EdDSA", issuer=ISSUER, token_lifetime=30
    )
    rotator = KeyRotator(store, master, policy)
    try:
        assert rotator.check(start + 50) == pytest.approx(50)  # sleeps until it is due
        assert len(store.list_keys()) == 1

        assert rotator.check(start + 100) == 0  # rotated; looks again at once
        first, new = store.list_keys()
        assert (new.alg, new.created_at, new.activates_at) == ("EdDSA", start + 100, start + 110)
        assert (first.retires_at, first.unpublish_at) == (start + 110, start + 110 + 30 + 300)

        # Another process deciding at the same moment finds it done: the next rotation is
        # due an interval after the new key starts signing (it looks again within a minute).
        other = KeyRotator(store, master, policy)
        assert other.check(start + 100) == 60
        assert other.check(start + 209) == pytest.approx(1)
        assert len(store.list_keys()) == 2
    finally:
        store.close()


def gauges(server: InProcessServer) -> dict[str, float]:
    response = server.request("GET", "/metrics")
    assert response.status_code == 200
    return {
        family.name: family.samples[0].value
        for family in text_string_to_metric_families(response.text)
        if family.name.startswith("swarm_oauth_signing_key")
    }


@pytest.mark.parametrize("interval", [3600.0, 0.0])
def test_metrics_show_the_key_age_and_the_next_rotation(tmp_path: Path, interval: float) -> None:
    before = time.time()
    server = InProcessServer(tmp_path / "data", key_rotation_interval=interval)
    try:
        values = gauges(server)
    finally:
        server.close()
    age = values.pop("swarm_oauth_signing_key_age_seconds")
    assert 0 <= age <= time.time() - before
    if interval:
        next_rotation = values.pop("swarm_oauth_signing_key_next_rotation_seconds")
        assert next_rotation + age == pytest.approx(interval)
    assert values == {}  # with rotation off, no next rotation at all


def test_the_clients_role_has_no_key_metrics(tmp_path: Path) -> None:
    server = InProcessServer(tmp_path / "data", role="clients")
    try:
        assert gauges(server) == {}
    finally:
        server.close()


def test_closing_a_server_stops_its_key_rotator(tmp_path: Path) -> None:
    def rotators() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "key-rotator"]

    server = InProcessServer(tmp_path / "data")
    assert len(rotators()) == 1
    server.runtime.watcher.poll()  # a round of changes applied, as the watcher makes
    server.close()
    assert rotators() == []
