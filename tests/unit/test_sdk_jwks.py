"""KeySet's pure parts: where metadata lives, what a JWKS yields, when to refetch."""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swarm_oauth.sdk import KeySetUnavailable
from swarm_oauth.sdk.jwks import KeySet, jwks_uri_from_metadata, metadata_url, parse_jwks


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
    with pytest.raises(KeySetUnavailable, match="names issuer"):
        jwks_uri_from_metadata(document, "http://b")
    with pytest.raises(KeySetUnavailable, match="no jwks_uri"):
        jwks_uri_from_metadata({"issuer": "http://a"}, "http://a")


def test_parse_jwks_keeps_usable_signing_keys_by_kid() -> None:
    document = {
        "keys": [
            jwk("good"),
            jwk(None),
            jwk("encryption", use="enc"),
            {"kid": "broken", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            "not a key",
        ]
    }
    keys = parse_jwks(document)
    assert list(keys) == ["good"]
    assert keys["good"].algorithm_name == "ES256"


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
