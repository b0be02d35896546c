"""Tokens signed on the hot path verify with PyJWT, for every algorithm offered."""

import jwt
import pytest

from swarm_oauth.keys import ALGORITHMS, MasterKey
from swarm_oauth.keys.keyring import KeyRing, load_key, new_key_record
from swarm_oauth.tokens import TokenIssuer


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_issued_tokens_verify_with_pyjwt(alg):
    master = MasterKey.from_text(MasterKey.generate_text())
    record = new_key_record(master, alg, "http://issuer", 0, 0)
    key = load_key(record, master)
    issuer = TokenIssuer("http://issuer", lambda: KeyRing([key]), lifetime=60)
    for scopes in ((), ("read", "write")):
        token = issuer.issue("svc", scopes, ("api",), 1_000).access_token
        assert jwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
        claims = jwt.decode(
            token,
            jwt.PyJWK(key.jwk).key,
            algorithms=[alg],
            audience="api",
            options={"verify_exp": False, "verify_iat": False},
        )
        assert claims["sub"] == "svc" and claims["exp"] == 1_060
        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(tampered, jwt.PyJWK(key.jwk).key, algorithms=[alg], audience="api",
                       options={"verify_exp": False, "verify_iat": False})  # fmt: skip


def test_claims_are_the_same_json_whatever_is_kept_encoded_between_tokens():
    master = MasterKey.from_text(MasterKey.generate_text())
    key = load_key(new_key_record(master, "ES256", "http://issuer", 0, 0), master)
    issuer_url = 'https://issuer.test/a"quote\\and\u00e9'  # escaped once, kept encoded
    issuer = TokenIssuer(issuer_url, lambda: KeyRing([key]), lifetime=60)
    seen = set()
    for now, scopes, audiences in [
        (1_000, (), ("api",)),
        (1_001, ("read", "write"), ("api", "billing")),
        (1_002, (), ("api",)),
        (1_003, ("read",), ("api",)),
    ]:
        issued = issuer.issue("svc", scopes, audiences, now)
        claims = jwt.decode(
            issued.access_token,
            jwt.PyJWK(key.jwk).key,
            algorithms=["ES256"],
            options={"verify_exp": False, "verify_iat": False, "verify_aud": False},
        )
        jti = claims.pop("jti")
        assert jti not in seen and len(jti) == 22
        seen.add(jti)
        expected = {
            "iss": issuer_url,
            "sub": "svc",
            "client_id": "svc",
            "aud": audiences[0] if len(audiences) == 1 else list(audiences),
            "iat": now,
            "exp": now + 60,
        }
        if scopes:
            expected["scope"] = " ".join(scopes)
        assert claims == expected
        assert issued.scope == " ".join(scopes) and issued.expires_in == 60
