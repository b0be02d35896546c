"""Tokens signed on the hot path verify with PyJWT, for every algorithm offered."""

import jwt
import pytest

from swarm_oauth.keys import ALGORITHMS, MasterKey
from swarm_oauth.keys.keyring import KeyRing, load_key
from swarm_oauth.keys.signing import new_key, private_key_der
from swarm_oauth.store import KeyRecord
from swarm_oauth.tokens import TokenIssuer


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_issued_tokens_verify_with_pyjwt(alg):
    master = MasterKey.from_text(MasterKey.generate_text())
    material = new_key(alg, "http://issuer")
    record = KeyRecord(
        kid=material.kid,
        alg=alg,
        private_key_encrypted=master.encrypt(
            private_key_der(material.private_key), material.kid.encode()
        ),
        certificate_pem=material.certificate_pem,
        created_at=0,
        activates_at=0,
    )
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
