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
