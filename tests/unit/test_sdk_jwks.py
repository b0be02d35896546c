"""KeySet's pure parts: where metadata lives, what a JWKS yields, when to refetch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swarm_oauth.sdk import IssuerConfigurationError, KeySetUnavailable, UnknownKey
from swarm_oauth.sdk.jwks import KeySet, jwks_uri_from_metadata, metadata_url, parse_jwks
from tests.support.document_server import DocumentServer


def jwk(kid: str | None, **extra: object) -> dict[str, object]:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    data = dict(jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True))
    if kid is not None:
        data["kid"] = kid
    return {**data, "alg": "ES256", **extra}


@pytest.mark.parametrize(
    ("issuer", "url"),
    [
        ("http://tokens:8080", "http://tokens:8080/.well-known/oauth-authorization-server"),
        ("https://a.example/", "https://a.example/.well-known/oauth-authorization-server"),
        ("https://a.example/t1", "https://a.example/.well-known/oauth-authorization-server/t1"),
    ],
)
def test_metadata_url_follows_rfc8414(issuer: str, url: str) -> None:
    assert metadata_url(issuer) == url


def test_metadata_must_be_the_issuers_own() -> None:
    document = {"issuer": "http://a", "jwks_uri": "http://a/jwks"}
    assert jwks_uri_from_metadata(document, "http://a") == "http://a/jwks"
    with pytest.raises(IssuerConfigurationError, match="names issuer 'http://a', not 'http://b'"):
        jwks_uri_from_metadata(document, "http://b")
    with pytest.raises(IssuerConfigurationError, match="no jwks_uri"):
        jwks_uri_from_metadata({"issuer": "http://a"}, "http://a")


def test_an_https_issuers_keys_come_over_https() -> None:
    secure = {"issuer": "https://a", "jwks_uri": "https://keys.a/jwks"}
    assert jwks_uri_from_metadata(secure, "https://a") == "https://keys.a/jwks"
    downgraded = {"issuer": "https://a", "jwks_uri": "http://elsewhere/jwks"}
    with pytest.raises(IssuerConfigurationError, match="is not https"):
        jwks_uri_from_metadata(downgraded, "https://a")


def test_parse_jwks_keeps_usable_public_signing_keys_by_kid() -> None:
    document = {
        "keys": [
            jwk("good"),
            jwk(None),
            jwk("encryption", use="enc"),
            {"kid": "broken", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kid": "shared", "kty": "oct", "alg": "HS256", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
            {"kid": "unknown", "kty": "XYZ", "alg": "ES256"},
            "not a key",
        ]
    }
    keys = parse_jwks(document)
    assert list(keys) == ["good"]
    assert keys["good"].algorithm_name == "ES256"


def test_of_keys_sharing_a_kid_the_first_usable_one_counts(caplog) -> None:
    broken = {"kid": "k", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "alg": "ES256"}
    first, second = jwk("k"), jwk("k")
    keys = parse_jwks({"keys": [broken, first, second]})
    assert keys["k"].jwk is first
    assert "skipping JWKS key 'k': an earlier key has the same kid" in caplog.text
    assert parse_jwks({"keys": [second, first]})["k"].jwk is second


@pytest.mark.parametrize("document", [{}, {"keys": "x"}, {"keys": [jwk(None)]}, []])
def test_parse_jwks_without_usable_keys_is_an_error(document: object) -> None:
    with pytest.raises(KeySetUnavailable):
        parse_jwks(document)


def test_failed_fetch_is_not_retried_within_the_refetch_interval() -> None:
    now = [100.0]
    keys = KeySet("http://0.0.0.0:9", "http://0.0.0.0:9/jwks", refetch_interval=5, timeout=1,
                  clock=lambda: now[0])  # fmt: skip
    with pytest.raises(KeySetUnavailable, match="ConnectError"):
        keys.get("k")
    attempted = keys._attempted_at
    now[0] += 4.9
    with pytest.raises(KeySetUnavailable):
        keys.get("k")
    assert keys._attempted_at == attempted  # answered from the last failure, no request
    now[0] += 0.2
    with pytest.raises(KeySetUnavailable):
        keys.get("k")
    assert keys._attempted_at == now[0]


@pytest.fixture
def jwks_server() -> Iterator[DocumentServer]:
    server = DocumentServer({"keys": [jwk("old")]}, "/jwks")
    yield server
    server.close()


def eventually(predicate: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def stale_keys(server: DocumentServer, now: list[float]) -> KeySet:
    """A KeySet holding key "old", fetched long enough ago to be past ``max_age``; the
    next fetch is held, and brings key "new" as well."""
    keys = KeySet("http://issuer", server.url, refetch_interval=5, max_age=60, timeout=2,
                  clock=lambda: now[0])  # fmt: skip
    keys.get("old")
    now[0] += 61
    server.document = {"keys": [server.document["keys"][0], jwk("new")]}
    server.hold()
    return keys


def test_keys_past_max_age_are_served_while_a_thread_refreshes_them(jwks_server):
    now = [100.0]
    keys = stale_keys(jwks_server, now)
    assert keys.get("old").key_id == "old"
    assert jwks_server.arrived.wait(10)
    assert keys._flight.busy  # get() did not wait for the refresh, which is still held
    keys.get("old")  # one refresh at a time
    jwks_server.release()
    eventually(lambda: not keys.refreshing)
    assert len(jwks_server.answered) == 2
    # The refresh brought "new", so asking for it costs no request (none is allowed yet).
    assert keys.get("new").key_id == "new"
    assert len(jwks_server.answered) == 2


def test_keys_past_max_age_are_served_while_a_task_refreshes_them(jwks_server):
    now = [100.0]
    keys = stale_keys(jwks_server, now)

    async def main() -> None:
        assert (await keys.aget("old")).key_id == "old"
        assert await asyncio.to_thread(jwks_server.arrived.wait, 10)
        assert keys._flight.busy
        await keys.aget("old")
        jwks_server.release()
        while keys.refreshing:
            await asyncio.sleep(0.01)
        assert (await keys.aget("new")).key_id == "new"

    asyncio.run(main())
    assert len(jwks_server.answered) == 2


def test_a_fetch_tells_which_keys_went_or_were_replaced() -> None:
    kept, dropped, replaced = jwk("kept"), jwk("dropped"), jwk("replaced")
    server = DocumentServer({"keys": [kept, dropped, replaced]}, "/jwks")
    told: list[frozenset[str]] = []
    try:
        keys = KeySet("http://issuer", server.url, refetch_interval=0, timeout=2,
                      on_change=told.append)  # fmt: skip
        keys.get("kept")
        assert told == []  # the first keys replace none
        server.document = {"keys": [kept, jwk("replaced"), jwk("added")]}
        keys.get("added")  # an unknown kid: fetched again
        assert told == [frozenset({"dropped", "replaced"})]
        with pytest.raises(UnknownKey):
            keys.get("unknown")  # fetched again, the same keys: nothing to tell
        assert len(server.answered) == 3
        assert told == [frozenset({"dropped", "replaced"})]
    finally:
        server.close()
