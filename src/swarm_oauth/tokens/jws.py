"""JWS compact serialization (RFC 7515 §7.1) for the token hot path.

PyJWT's ``jwt.encode`` re-encodes the header, sorts the claims and looks the algorithm
up on every call; the profile put that at about a third of a token's signing time. Here
the header segment is encoded once per key and the signature comes straight from
``cryptography``. Verification stays with PyJWT everywhere (tests, SDK), which checks
that what this writes is standard.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from swarm_oauth.keys.material import PrivateKey, b64url

Signer = Callable[[bytes], bytes]
# Algorithms whose signature takes long enough to belong off the event loop: an RSA-2048
# signature costs about a millisecond, during which a server on one loop answers nothing
# else, and cryptography releases the GIL while it computes one. ES256 and EdDSA sign in
# a few tens of microseconds with the GIL held, less than a hand-off to a thread costs.
OFF_LOOP_ALGS = frozenset({"RS256"})
# ``json.dumps`` with any option builds a new encoder on every call.
_encode = json.JSONEncoder(separators=(",", ":")).encode


def signer_for(private_key: PrivateKey) -> Signer:
    """The JWS signature function (RFC 7518 §3.3, §3.4; RFC 8037) of ``private_key``."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        size = (private_key.curve.key_size + 7) // 8
        algorithm = ec.ECDSA(hashes.SHA256())

        def sign_ec(data: bytes) -> bytes:
            # JWS wants the fixed-size R || S, not the DER that cryptography returns.
            r, s = decode_dss_signature(private_key.sign(data, algorithm))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")

        return sign_ec
    if isinstance(private_key, rsa.RSAPrivateKey):
        return lambda data: private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key.sign
    raise TypeError(f"no JWS signer for {type(private_key).__name__}")


def header_segment(header: dict[str, Any]) -> str:
    """The encoded protected header, to be computed once per key."""
    return b64url(_encode(header).encode())


def claims_json(claims: object) -> str:
    """Compact JSON, as the claims of a token are encoded (a claim value, too)."""
    return _encode(claims)


def compact(header: str, payload: str, sign: Signer) -> str:
    """``header.payload.signature`` for the claims JSON ``payload``."""
    signing_input = f"{header}.{b64url(payload.encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode('ascii')))}"
