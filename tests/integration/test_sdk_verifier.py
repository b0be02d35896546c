"""Verifier against a real token server: good, expired, wrong-audience, wrong-issuer,
tampered and unknown-kid tokens, and key rotation picked up by a running verifier.

Requests to the server are counted with httpx event hooks on the real transport.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import subprocess
import sys
import threading
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swarm_oauth.sdk import (
    ExpiredToken,
    InsufficientScope,
    InvalidAudience,
    InvalidIssuer,
    InvalidSignature,
    IssuerConfigurationError,
    KeySetUnavailable,
    MalformedToken,
    UnknownKey,
    Verifier,
)
from swarm_oauth.sdk.jwks import metadata_url
from tests.support.server import ServerProcess, free_port

METADATA = "/.well-known/oauth-authorization-server"
JWKS = "/.well-known/jwks.json"


class Recorder:
    """Records the paths requested through the clients it hands out."""

    def __init__(self) -> None:
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def _record(self, request: httpx.Request) -> None:
        with self._lock:
            self.paths.append(request.url.path)

    async def _arecord(self, request: httpx.Request) -> None:
        self._record(request)

    def client(self) -> httpx.Client:
        return httpx.Client(timeout=10, event_hooks={"request": [self._record]})

    def async_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=10, event_hooks={"request": [self._arecord]})


def register(server: ServerProcess) -> str:
    """Register client "orders" and return its secret."""
    body = server.add_client("orders", scopes=["read", "write"], audiences=["inventory", "billing"])
    return str(body["client_secret"])


def issue(server: ServerProcess, secret: str, audience: str = "inventory", **form: str) -> str:
    """A token for client "orders" from ``server``."""
    response = server.token("orders", secret, audience=audience, **form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
def secret(token_server: ServerProcess) -> str:
    return register(token_server)


def verifier_for(server: ServerProcess, recorder: Recorder, **options: Any) -> Verifier:
    return Verifier(
        issuer=server.url, audience="inventory", http_client=recorder.client(), **options
    )


def test_good_tokens_verify_without_a_request_each(
    token_server: ServerProcess, secret: str
) -> None:
    recorder = Recorder()
    verifier = verifier_for(token_server, recorder)
    tokens = [issue(token_server, secret, scope="read") for _ in range(3)]
    for token in tokens * 5:
        claims = verifier.verify(token, scopes=["read"])
        assert claims["iss"] == token_server.url
        assert claims["sub"] == claims["client_id"] == "orders"
        assert claims["aud"] == "inventory"
    assert recorder.paths == [METADATA, JWKS]


def test_async_verification_fetches_once_for_fifty_concurrent_tasks(
    token_server: ServerProcess, secret: str
) -> None:
    token = issue(token_server, secret)
    recorder = Recorder()

    async def main() -> list[dict[str, Any]]:
        async with recorder.async_client() as client:
            verifier = Verifier(
                issuer=token_server.url, audience="inventory", async_http_client=client
            )
            return await asyncio.gather(*(verifier.averify(token) for _ in range(50)))

    assert all(claims["sub"] == "orders" for claims in asyncio.run(main()))
    assert recorder.paths == [METADATA, JWKS]


def test_expired_token(server_factory: Any) -> None:
    # Valid >= 4 s after issue: the first verify (which fetches metadata and keys) happens
    # before it expires, even on a slow machine.
    server = server_factory(args=["--token-lifetime", "5"])
    token = issue(server, register(server))
    strict = Verifier(issuer=server.url, audience="inventory", leeway=0)
    assert strict.verify(token)["sub"] == "orders"
    assert len(strict.cache) == 1  # so the refusal below is the cache's as well
    expires = jwt.decode(token, options={"verify_signature": False})["exp"]
    while time.time() < expires:
        time.sleep(0.1)
    with pytest.raises(ExpiredToken, match="expired"):
        strict.verify(token)
    lenient = Verifier(issuer=server.url, audience="inventory", leeway=60)
    assert lenient.verify(token)["sub"] == "orders"


def test_token_for_another_audience(token_server: ServerProcess, secret: str) -> None:
    token = issue(token_server, secret, audience="billing")
    with pytest.raises(InvalidAudience, match=r"'billing' does not include 'inventory'"):
        Verifier(issuer=token_server.url, audience="inventory").verify(token)
    both = Verifier(issuer=token_server.url, audience=["inventory", "billing"])
    assert both.verify(token)["aud"] == "billing"


def test_token_from_another_issuer_with_the_same_keys(server_factory: Any) -> None:
    # A second tokens process on the same store signs with the same keys but another iss.
    main = server_factory()
    other = server_factory(
        data_dir=main.data_dir, role="tokens", args=["--issuer", "http://other.example"]
    )
    token = issue(other, register(main))
    with pytest.raises(InvalidIssuer, match=r"'http://other\.example' is not"):
        Verifier(issuer=main.url, audience="inventory").verify(token)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_a_token_that_is_not_text_is_malformed_and_says_what_it_is(
    token_server: ServerProcess, secret: str
) -> None:
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    token = issue(token_server, secret)
    with pytest.raises(MalformedToken, match="token is bytes, not text"):
        verifier.verify(token.encode())  # type: ignore[arg-type]
    with pytest.raises(MalformedToken, match="token is NoneType, not text"):
        verifier.verify(None)  # type: ignore[arg-type]
    with pytest.raises(MalformedToken, match="token is empty"):
        verifier.verify("")


def test_tampered_tokens(token_server: ServerProcess, secret: str) -> None:
    header, payload, signature = issue(token_server, secret, scope="read").split(".")
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    claims = json.loads(unb64(payload))
    claims["scope"] = "read write"
    escalated = f"{header}.{b64(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(InvalidSignature):
        verifier.verify(escalated)
    raw = bytearray(unb64(signature))
    raw[5] ^= 0x01
    with pytest.raises(InvalidSignature):
        verifier.verify(f"{header}.{payload}.{b64(bytes(raw))}")


def forged(server: ServerProcess, kid: str) -> str:
    """A well-formed access token for our audience, signed by a key the issuer never had."""
    now = int(time.time())
    claims = {
        "iss": server.url, "sub": "orders", "client_id": "orders", "aud": "inventory",
        "iat": now, "exp": now + 600, "jti": kid, "scope": "read write",
    }  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"})


def test_unknown_kid_refetches_at_most_once_per_interval(
    token_server: ServerProcess, secret: str
) -> None:
    recorder = Recorder()
    verifier = verifier_for(token_server, recorder, refetch_interval=3600)
    for attempt in range(10):
        with pytest.raises(UnknownKey):
            verifier.verify(forged(token_server, f"made-up-{attempt}"))
    assert recorder.paths == [METADATA, JWKS]
    assert verifier.verify(issue(token_server, secret))["sub"] == "orders"
    assert recorder.paths == [METADATA, JWKS]

    eager = Recorder()
    unthrottled = verifier_for(token_server, eager, refetch_interval=0)
    for attempt in range(3):
        with pytest.raises(UnknownKey):
            unthrottled.verify(forged(token_server, f"made-up-{attempt}"))
    assert eager.paths == [METADATA, JWKS, JWKS, JWKS]


def rotate_keys(server: ServerProcess, publish_ahead: float) -> None:
    subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "keys", "rotate",
         "--data-dir", str(server.data_dir), "--publish-ahead", str(publish_ahead)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def token_with_new_key(
    server: ServerProcess, secret: str, old_kid: str, timeout: float = 30
) -> str:
    """Poll the token endpoint until the server signs with a key other than ``old_kid``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        token = issue(server, secret)
        if kid_of(token) != old_kid:
            return token
        time.sleep(0.2)
    raise AssertionError(f"server still signs with {old_kid} after {timeout}s")


def test_key_rotation_is_picked_up_by_a_running_verifier(
    token_server: ServerProcess, secret: str
) -> None:
    recorder = Recorder()
    verifier = verifier_for(token_server, recorder, refetch_interval=0.5)
    before = issue(token_server, secret)
    assert verifier.verify(before)["sub"] == "orders"
    fetched_at = time.monotonic()

    rotate_keys(token_server, publish_ahead=0)
    after = token_with_new_key(token_server, secret, kid_of(before))
    time.sleep(max(0.0, fetched_at + 0.5 - time.monotonic()))  # past the refetch interval

    assert verifier.verify(after)["sub"] == "orders"
    assert verifier.verify(before)["sub"] == "orders"  # the old key is still published
    assert recorder.paths == [METADATA, JWKS, JWKS]


def refreshed(verifier: Verifier) -> None:
    """Wait for the end of a background key refresh that the last call started, if any."""
    deadline = time.monotonic() + 30
    while verifier.keys.refreshing:
        assert time.monotonic() < deadline, "the key refresh did not end"
        time.sleep(0.01)


def test_key_published_ahead_is_known_before_it_signs(
    token_server: ServerProcess, secret: str
) -> None:
    recorder = Recorder()
    # Keys are re-read after max_age; an unknown kid could never trigger a refetch here.
    verifier = verifier_for(token_server, recorder, refetch_interval=0.5, max_age=0.5)
    before = issue(token_server, secret)
    verifier.verify(before)
    rotate_keys(token_server, publish_ahead=3)
    published = False
    while not published:  # the server reloads keys from the store within a second or so
        time.sleep(0.6)
        verifier.verify(before)  # keys older than max_age: refreshed in the background
        refreshed(verifier)
        with httpx.Client() as client:
            published = len(client.get(f"{token_server.url}{JWKS}").json()["keys"]) == 2
        time.sleep(0.6)
        verifier.verify(before)
        refreshed(verifier)
    verifier.keys.max_age = 3600
    verifier.keys.refetch_interval = 3600
    fetches = len(recorder.paths)
    after = token_with_new_key(token_server, secret, kid_of(before))
    assert verifier.verify(after)["sub"] == "orders"
    assert len(recorder.paths) == fetches


def test_cached_keys_stay_in_use_when_the_issuer_is_down(
    token_server: ServerProcess, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    # Keys are due for refresh on every call, so each verify below tries the network.
    verifier = verifier_for(token_server, recorder, refetch_interval=0, max_age=0)
    token = issue(token_server, secret)
    assert verifier.verify(token)["sub"] == "orders"
    token_server.stop()
    with caplog.at_level(logging.WARNING, logger="swarm_oauth.sdk"):
        assert verifier.verify(token)["sub"] == "orders"  # the refresh runs meanwhile
        refreshed(verifier)
    assert recorder.paths == [METADATA, JWKS, JWKS]
    assert "keeping cached keys" in caplog.text


def test_metadata_of_another_issuer_is_an_issuer_configuration_error(
    token_server: ServerProcess, secret: str, caplog: pytest.LogCaptureFixture
) -> None:
    # A trailing slash is another issuer (RFC 8414 §3.3 compares exactly).
    verifier = Verifier(issuer=f"{token_server.url}/", audience="inventory")
    token = issue(token_server, secret)
    with (
        caplog.at_level(logging.ERROR, logger="swarm_oauth.sdk"),
        pytest.raises(IssuerConfigurationError) as caught,
    ):
        verifier.verify(token)
    reason = f"names issuer {token_server.url!r}, not '{token_server.url}/'"
    assert f"issuer metadata at {token_server.url}{METADATA}: it {reason}" in str(caught.value)
    assert reason in caplog.text


@pytest.mark.parametrize("wrong", ["path", "port"])
def test_issuer_whose_metadata_cannot_be_fetched_names_the_url_and_why(
    token_server: ServerProcess, secret: str, wrong: str
) -> None:
    if wrong == "path":
        issuer, reason = f"{token_server.url}/tenant", "answered HTTP 404"
    else:
        issuer, reason = f"http://127.0.0.1:{free_port()}", "ConnectError"
    verifier = Verifier(issuer=issuer, audience="inventory", timeout=2)
    with pytest.raises(IssuerConfigurationError) as caught:
        asyncio.run(verifier.averify(issue(token_server, secret)))
    assert f"issuer metadata at {metadata_url(issuer)}: {reason}" in str(caught.value)


def test_jwks_outage_is_not_an_issuer_configuration_error(
    token_server: ServerProcess, secret: str
) -> None:
    token = issue(token_server, secret)
    verifier = Verifier(
        issuer=token_server.url, audience="inventory", jwks_url=f"{token_server.url}/nope"
    )
    with pytest.raises(KeySetUnavailable, match=r"JWKS at .*/nope: answered HTTP 404") as caught:
        verifier.verify(token)
    assert not isinstance(caught.value, IssuerConfigurationError)


def test_explicit_jwks_url_skips_discovery(token_server: ServerProcess, secret: str) -> None:
    recorder = Recorder()
    verifier = verifier_for(token_server, recorder, jwks_url=f"{token_server.url}{JWKS}")
    assert verifier.verify(issue(token_server, secret))["sub"] == "orders"
    assert recorder.paths == [JWKS]


def test_a_cached_token_is_still_checked_for_scopes_and_audience(
    token_server: ServerProcess, secret: str
) -> None:
    token = issue(token_server, secret, scope="read")
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    first = verifier.verify(token, scopes=["read"])
    assert len(verifier.cache) == 1
    with pytest.raises(InsufficientScope, match="write"):
        verifier.verify(token, scopes=["read", "write"])
    again = asyncio.run(verifier.averify(token, scopes=["read"]))
    assert again is first  # the same read-only claims, not a copy per call
    with pytest.raises(TypeError, match="read-only"):
        again["scope"] = "read write"
    with pytest.raises(InsufficientScope):
        verifier.verify(token, scopes=["write"])
    with pytest.raises(InvalidAudience):  # another service's verifier has its own cache
        Verifier(issuer=token_server.url, audience="billing").verify(token)


def test_a_cached_token_is_refused_once_its_key_leaves_the_jwks(
    token_server: ServerProcess, secret: str
) -> None:
    verifier = Verifier(
        issuer=token_server.url, audience="inventory", refetch_interval=0.2, max_age=0.2
    )
    token = issue(token_server, secret)
    assert verifier.verify(token)["sub"] == "orders"
    old_kid = kid_of(token)
    rotate_keys(token_server, publish_ahead=0)
    token_with_new_key(token_server, secret, old_kid)
    subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "keys", "retire",
         "--data-dir", str(token_server.data_dir), "--", old_kid],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    # Served from the cache until a refresh (keys past max_age) finds the key gone.
    deadline = time.monotonic() + 30
    with pytest.raises(UnknownKey, match=old_kid[:20]):
        while time.monotonic() < deadline:
            verifier.verify(token)
            time.sleep(0.05)
    assert len(verifier.cache) == 0


def test_missing_scope(token_server: ServerProcess, secret: str) -> None:
    verifier = Verifier(issuer=token_server.url, audience="inventory")
    with pytest.raises(InsufficientScope, match="write"):
        verifier.verify(issue(token_server, secret, scope="read"), scopes=["read", "write"])
