"""The server's own token checks (forward-auth, introspection, revocation), on real keys
and tokens from the real issuer: what passes, what does not and why, and what is
remembered between calls."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import jwt
import pytest

from swarm_oauth.keys import ALGORITHMS, KeyRing, MasterKey
from swarm_oauth.keys.keyring import load_key, new_key_record
from swarm_oauth.keys.material import b64url
from swarm_oauth.tokens import (
    InsufficientScope,
    InvalidToken,
    RevocationList,
    TokenIssuer,
    TokenVerifier,
)
from swarm_oauth.tokens.issuer import VERIFY_LEEWAY_SECONDS
from swarm_oauth.tokens.revocation import client_revocation, token_revocation

ISSUER = "http://tokens.test"
NOW = time.time()


@dataclasses.dataclass
class World:
    """A key ring and revocations that tests replace, as the watcher would."""

    ring: KeyRing
    revocations: RevocationList = dataclasses.field(default_factory=RevocationList)

    def verifier(self, **options: int) -> TokenVerifier:
        return TokenVerifier(ISSUER, lambda: self.ring, lambda: self.revocations, **options)

    def issue(self, *, issuer: str = ISSUER, at: float = NOW, **claims: list[str]) -> str:
        scopes, audiences = claims.get("scopes", ["read"]), claims.get("audiences", ["orders"])
        token_issuer = TokenIssuer(issuer, lambda: self.ring)
        return token_issuer.issue("svc", scopes, audiences, at).access_token


def ring_of(alg: str = "ES256", **times: float) -> KeyRing:
    master = MasterKey.from_text(MasterKey.generate_text())
    record = new_key_record(master, alg, ISSUER, NOW - 3600, NOW - 3600)
    return KeyRing([load_key(dataclasses.replace(record, **times), master)])


@pytest.fixture
def world() -> World:
    return World(ring_of())


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_a_token_of_this_issuer_passes_with_its_claims(alg):
    world = World(ring_of(alg))
    verified = world.verifier().authorize(
        world.issue(scopes=["read", "write"], audiences=["orders", "billing"]),
        NOW,
        audience="billing",
        scopes=["write", "read"],
    )
    assert (verified.client_id, verified.scope) == ("svc", "read write")
    assert verified.audiences == ("orders", "billing")
    assert verified.claims["iss"] == ISSUER
    assert verified.expires_at == verified.issued_at + 900


def test_audience_and_scope_are_checked_when_asked(world):
    token, verifier = world.issue(), world.verifier()
    with pytest.raises(InvalidToken, match="not meant for audience billing"):
        verifier.authorize(token, NOW, audience="billing")
    with pytest.raises(InsufficientScope) as refused:
        verifier.authorize(token, NOW, scopes=["read", "write", "admin"])
    assert refused.value.missing == ("admin", "write")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "not a JWT"),
        ("garbage", "not a JWT"),
        ("a.b.c", "not a JWT"),
        ("x" * 20_000, "longer than"),
    ],
)
def test_what_is_not_a_jwt_is_invalid(world, token, reason):
    with pytest.raises(InvalidToken, match=reason):
        world.verifier().check(token, NOW)


def test_a_token_of_another_issuer_or_key_is_invalid(world):
    with pytest.raises(InvalidToken, match="not issued here"):
        world.verifier().check(world.issue(issuer="http://elsewhere"), NOW)
    stranger = World(ring_of()).issue()
    with pytest.raises(InvalidToken, match="not signed with a key of this issuer"):
        world.verifier().check(stranger, NOW)


def test_headers_that_are_not_an_access_token_of_the_key_are_invalid(world):
    (key,) = world.ring.keys
    claims = jwt.decode(world.issue(), options={"verify_signature": False})
    private = key.private_key
    id_token = jwt.encode(claims, private, "ES256", headers={"kid": key.kid, "typ": "JWT"})
    with pytest.raises(InvalidToken, match="typ at\\+jwt"):
        world.verifier().check(id_token, NOW)
    unsigned = jwt.encode(claims, None, "none", headers={"kid": key.kid, "typ": "at+jwt"})
    with pytest.raises(InvalidToken, match="alg is not its key's"):
        world.verifier().check(unsigned, NOW)


def test_a_tampered_token_is_invalid(world):
    header, payload, signature = world.issue().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = b64url(json.dumps({**claims, "scope": "admin"}).encode())
    with pytest.raises(InvalidToken, match="signature does not verify"):
        world.verifier().check(f"{header}.{forged}.{signature}", NOW)


def test_expiry_is_checked_on_every_call_with_the_leeway(world):
    token, verifier = world.issue(), world.verifier()
    expires_at = verifier.check(token, NOW).expires_at
    assert verifier.check(token, expires_at + VERIFY_LEEWAY_SECONDS - 1)  # remembered
    with pytest.raises(InvalidToken, match="expired"):
        verifier.check(token, expires_at + VERIFY_LEEWAY_SECONDS)
    with pytest.raises(InvalidToken, match="expired"):
        world.verifier().check(world.issue(at=NOW - 2000), NOW)  # never seen before
    with pytest.raises(InvalidToken, match="not valid yet"):
        world.verifier().check(world.issue(at=NOW + VERIFY_LEEWAY_SECONDS + 60), NOW)
    # The caller's clock decides, whatever the machine's says.
    later = NOW + 3600
    assert world.verifier().check(world.issue(at=later), later).issued_at == int(later)


def test_revocations_count_at_once_even_for_a_remembered_token(world):
    token, other, verifier = world.issue(), world.issue(), world.verifier()
    jti = verifier.check(token, NOW).jti
    world.revocations = RevocationList([token_revocation("svc", jti, NOW + 900)])
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.check(token, NOW)
    assert verifier.check(other, NOW)
    world.revocations = world.revocations.with_record(client_revocation("svc", NOW + 1))
    with pytest.raises(InvalidToken, match="revoked"):
        verifier.check(other, NOW)
    assert verifier.check(world.issue(at=NOW + 2), NOW + 2)


def test_a_withdrawn_key_stops_its_tokens_at_once(world):
    token, verifier = world.issue(), world.verifier()
    verifier.check(token, NOW)
    world.ring = KeyRing()  # `keys retire`: the watcher loads a ring without it
    with pytest.raises(InvalidToken, match="not signed with a key"):
        verifier.check(token, NOW)
    past = World(ring_of(unpublish_at=NOW - 1))
    with pytest.raises(InvalidToken, match="not signed with a key"):
        past.verifier().check(past.issue(at=NOW - 600), NOW)


def test_a_token_costs_one_signature_check_and_memory_is_bounded(world, monkeypatch):
    decoded = []
    real_decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: decoded.append(1) or real_decode(*a, **k))
    verifier = world.verifier(max_remembered=3)
    token = world.issue()
    for _ in range(5):
        verifier.check(token, NOW)
    assert len(decoded) == 1
    for _ in range(10):
        verifier.check(world.issue(), NOW)
    assert verifier.remembered == 3
    verifier.check(token, NOW)  # pushed out by newer ones: checked again
    assert len(decoded) == 12
