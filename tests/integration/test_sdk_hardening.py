"""Issue 12: key/algorithm confusion, attempted against a Verifier for real.

An issuer whose JWKS we control is served over real HTTP (metadata and JWKS), so the
attacks can use what the real token server would never publish: a symmetric ``oct``
key, and an EC key under a header that claims another algorithm.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from swarm_oauth.sdk import ExcessiveLifetime, InvalidAlgorithm, UnknownKey, Verifier
from tests.support.server import ServerProcess

AUDIENCE = "inventory"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


EC_KEY = ec.generate_private_key(ec.SECP256R1())
SHARED_SECRET = secrets.token_bytes(32)
# The JWKS of a careless issuer: its ES256 key and, next to it, a symmetric key.
CARELESS_JWKS = {
    "keys": [
        {
            **jwt.algorithms.ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True),
            "kid": "ec",
            "alg": "ES256",
            "use": "sig",
        },
        {"kty": "oct", "kid": "shared", "alg": "HS256", "k": b64(SHARED_SECRET)},
    ]
}


class Issuer:
    """Serves RFC 8414 metadata and a JWKS that the test writes, as files on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        metadata = {"issuer": self.url, "jwks_uri": f"{self.url}/jwks.json"}
        self.serve(".well-known/oauth-authorization-server", metadata)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def serve(self, path: str, document: dict[str, Any]) -> None:
        file = self.root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(document))

    def claims(self) -> dict[str, Any]:
        now = int(time.time())
        return {
            "iss": self.url, "sub": "orders", "client_id": "orders", "aud": AUDIENCE,
            "iat": now, "exp": now + 600, "jti": secrets.token_hex(8), "scope": "read",
        }  # fmt: skip

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def issuer(tmp_path: Path) -> Iterator[Issuer]:
    served = Issuer(tmp_path)
    served.serve("jwks.json", CARELESS_JWKS)
    yield served
    served.close()


def signed(header: dict[str, Any], claims: dict[str, Any], sign: Any) -> str:
    """A compact JWS whose header says what the attacker likes, signed by ``sign``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def hmac_sha256(message: bytes) -> bytes:
    return hmac.new(SHARED_SECRET, message, hashlib.sha256).digest()


def es256(message: bytes) -> bytes:
    return jwt.algorithms.ECAlgorithm(jwt.algorithms.ECAlgorithm.SHA256).sign(message, EC_KEY)


def test_honest_es256_token_verifies(issuer: Issuer) -> None:
    # The setup works: what is refused below is refused for the attack, not the setup.
    token = signed({"alg": "ES256", "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    assert Verifier(issuer=issuer.url, audience=AUDIENCE).verify(token)["sub"] == "orders"


def test_hmac_signed_token_labelled_es256_naming_an_oct_key_is_refused(issuer: Issuer) -> None:
    forged = signed(
        {"alg": "ES256", "typ": "at+jwt", "kid": "shared"}, issuer.claims(), hmac_sha256
    )
    verifier = Verifier(issuer=issuer.url, audience=AUDIENCE)
    with pytest.raises(UnknownKey, match="'shared'"):
        verifier.verify(forged)  # the oct key was never taken into the key set
    assert set(verifier.keys.published or ()) == {"ec"}

    # PyJWT 2.13+ (the floor in pyproject.toml) refuses it too when handed the oct key.
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(forged, jwt.PyJWK(CARELESS_JWKS["keys"][1]), algorithms=["ES256"],
                   audience=AUDIENCE)  # fmt: skip


@pytest.mark.parametrize("claimed", ["ES384", "RS256"])
def test_es256_key_cannot_verify_a_token_that_claims_another_alg(
    issuer: Issuer, claimed: str
) -> None:
    # Signed with the key's own ES256 math, so only the alg label is wrong.
    token = signed({"alg": claimed, "typ": "at+jwt", "kid": "ec"}, issuer.claims(), es256)
    verifier = Verifier(issuer=issuer.url, audience=AUDIENCE, algorithms=["ES256", claimed])
    with pytest.raises(InvalidAlgorithm, match=f"alg {claimed} is not the algorithm of key 'ec'"):
        verifier.verify(token)


def test_max_lifetime_refuses_long_lived_tokens(token_server: ServerProcess) -> None:
    body = token_server.add_client("orders", audiences=[AUDIENCE])
    response = token_server.token("orders", body["client_secret"], audience=AUDIENCE)
    token = response.json()["access_token"]
    lifetime = response.json()["expires_in"]  # the server's default, 900 s
    assert Verifier(issuer=token_server.url, audience=AUDIENCE).verify(token)["sub"] == "orders"
    fitting = Verifier(issuer=token_server.url, audience=AUDIENCE, max_lifetime=lifetime)
    assert fitting.verify(token)["sub"] == "orders"
    strict = Verifier(issuer=token_server.url, audience=AUDIENCE, max_lifetime=lifetime - 1)
    with pytest.raises(ExcessiveLifetime, match=f"{lifetime}s .exp - iat. exceeds"):
        strict.verify(token)
