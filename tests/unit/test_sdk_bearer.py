"""RFC 6750 helpers and the checks a Verifier makes before it needs any key."""

from __future__ import annotations

import asyncio
import base64

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swarm_oauth.sdk import (
    ConfigurationError,
    InsufficientScope,
    InvalidAlgorithm,
    InvalidTokenType,
    KeySetUnavailable,
    MalformedToken,
    UnknownKey,
    Verifier,
    require_scopes,
    scopes_of,
)
from swarm_oauth.sdk.bearer import InvalidRequest, Rejection, authenticate, bearer_token, challenge
from swarm_oauth.sdk.verifier import MAX_TOKEN_LENGTH


def test_no_header_or_another_scheme_means_no_bearer_credentials() -> None:
    assert bearer_token([]) is None
    assert bearer_token(["Basic dXNlcjpwYXNz"]) is None


def test_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token(["bearer abc.def.ghi"]) == "abc.def.ghi"
    assert bearer_token(["BEARER   abc.def.ghi  "]) == "abc.def.ghi"


@pytest.mark.parametrize("values", [["Bearer a", "Bearer b"], ["Bearer"], ["Bearer a b"]])
def test_malformed_bearer_credentials_are_bad_requests(values: list[str]) -> None:
    with pytest.raises(InvalidRequest):
        bearer_token(values)


def test_bare_challenge_when_no_credentials() -> None:
    assert challenge() == "Bearer"
    assert challenge(realm="orders") == 'Bearer realm="orders"'


def test_challenge_carries_error_description_and_scope() -> None:
    value = challenge(None, "insufficient_scope", "token lacks scope(s): write", {"write", "a"})
    assert value == (
        'Bearer error="insufficient_scope", '
        'error_description="token lacks scope(s): write", scope="a write"'
    )


def test_challenge_drops_characters_rfc6750_forbids() -> None:
    value = challenge(None, "invalid_token", 'iss "evil"\\\r\nSet-Cookie: x=1 é')
    assert value == 'Bearer error="invalid_token", error_description="iss evilSet-Cookie: x=1 "'


def test_scopes_of_reads_the_scope_claim() -> None:
    assert scopes_of({"scope": "read  write"}) == {"read", "write"}
    assert scopes_of({"scope": ["read", 3]}) == {"read"}
    assert scopes_of({}) == frozenset()


def test_require_scopes_names_what_is_missing() -> None:
    require_scopes({"scope": "read write"}, ["read"])
    with pytest.raises(InsufficientScope) as caught:
        require_scopes({"scope": "read"}, ["write", "read", "admin"])
    assert caught.value.description == "token lacks scope(s): admin write"
    assert caught.value.required == {"write", "read", "admin"}
    assert (caught.value.status_code, caught.value.error) == (403, "insufficient_scope")


def test_required_scopes_in_one_string_are_space_separated() -> None:
    require_scopes({"scope": "read write"}, "write")
    require_scopes({"scope": "read write"}, " read  write ")
    with pytest.raises(InsufficientScope) as caught:
        require_scopes({"scope": "read"}, "read admin")
    assert caught.value.required == {"read", "admin"}


# A verifier whose keys live nowhere: every check below must fail before any fetch.
OFFLINE = Verifier(issuer="http://issuer.invalid", audience="orders", jwks_url="http://0.0.0.0:9/")
KEY = ec.generate_private_key(ec.SECP256R1())


def token(headers: dict[str, object], algorithm: str = "ES256", key: object = KEY) -> str:
    return jwt.encode({"sub": "x"}, key, algorithm=algorithm, headers=headers)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        ("", MalformedToken),
        ("not-a-jwt", MalformedToken),
        ("a.b.c", MalformedToken),
        (base64.urlsafe_b64encode(b"[" * 5000).decode() + ".e30.c2ln", MalformedToken),
        ("x" * (MAX_TOKEN_LENGTH + 1), MalformedToken),
        (jwt.encode({"sub": "x"}, None, algorithm="none"), InvalidAlgorithm),
        (token({"typ": "at+jwt", "kid": "k"}, "HS256", "k" * 32), InvalidAlgorithm),
        (token({"typ": "at+jwt", "kid": "k"}, "ES384", ec.generate_private_key(ec.SECP384R1())),
         InvalidAlgorithm),
        (token({"kid": "k"}), InvalidTokenType),  # PyJWT's default typ is "JWT"
        (token({"typ": "JWT", "kid": "k"}), InvalidTokenType),
        (token({"typ": "at+jwt"}), UnknownKey),
    ],
)  # fmt: skip
def test_header_checks_fail_before_any_key_is_fetched(bad: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        OFFLINE.verify(bad)
    with pytest.raises(error):
        asyncio.run(OFFLINE.averify(bad))


def test_typ_may_be_the_full_media_type() -> None:
    # Passes the typ check and only then needs the (unreachable) keys.
    with pytest.raises(KeySetUnavailable):
        OFFLINE.verify(token({"typ": "application/at+JWT", "kid": "k"}))


@pytest.mark.parametrize("algorithms", [["none"], ["ES256", "HS256"]])
def test_unsafe_algorithms_cannot_be_allowed(algorithms: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="cannot verify"):
        Verifier(issuer="http://i", audience="a", algorithms=algorithms)


@pytest.mark.parametrize("max_lifetime", [0, -60])
def test_max_lifetime_must_be_positive(max_lifetime: float) -> None:
    with pytest.raises(ConfigurationError, match="max_lifetime"):
        Verifier(issuer="http://i", audience="a", max_lifetime=max_lifetime)


def test_authenticate_turns_each_outcome_into_a_response() -> None:
    async def outcome(values: list[str]) -> object:
        return await authenticate(OFFLINE, values, realm="svc")

    missing = asyncio.run(outcome([]))
    assert missing == Rejection(
        401,
        "invalid_token",
        "a Bearer token is required",
        {"WWW-Authenticate": 'Bearer realm="svc"'},
    )
    bad = asyncio.run(outcome(["Bearer a", "Bearer b"]))
    assert isinstance(bad, Rejection)
    assert bad.status_code == 400
    assert 'error="invalid_request"' in bad.headers["WWW-Authenticate"]
    wrong_type = asyncio.run(outcome([f"Bearer {token({'typ': 'JWT', 'kid': 'k'})}"]))
    assert isinstance(wrong_type, Rejection)
    assert wrong_type.status_code == 401
    assert wrong_type.headers["WWW-Authenticate"].startswith(
        'Bearer realm="svc", error="invalid_token"'
    )
    unavailable = asyncio.run(outcome([f"Bearer {token({'typ': 'at+jwt', 'kid': 'k'})}"]))
    assert isinstance(unavailable, Rejection)
    assert (unavailable.status_code, unavailable.error) == (503, "temporarily_unavailable")
    assert "0.0.0.0" not in unavailable.description
