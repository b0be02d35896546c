"""Signing key material: generation, self-signed certificates and JWKs."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

ALGORITHMS = ("ES256", "RS256", "EdDSA")
CERT_VALIDITY = datetime.timedelta(days=3650)
# 2048 bits, as the large identity providers publish: about ten times faster to sign than
# 3072, and within NIST guidance for keys used through 2030.
RSA_BITS = 2048


def generate_private_key(alg: str) -> PrivateKey:
    """A new private key for the JWS algorithm ``alg``."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported signing algorithm {alg!r}; choose one of {ALGORITHMS}")


def public_jwk(public_key: PublicKey) -> dict[str, Any]:
    """The public JWK members (RFC 7517/7518/8037) of ``public_key``."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        jwk = dict(ECAlgorithm.to_jwk(public_key, as_dict=True))
    elif isinstance(public_key, rsa.RSAPublicKey):
        jwk = dict(RSAAlgorithm.to_jwk(public_key, as_dict=True))
    else:
        jwk = dict(OKPAlgorithm.to_jwk(public_key, as_dict=True))
    # PyJWT adds key_ops to RSA keys; the JWKS says "use": "sig", and RFC 7517 §4.3 says
    # not to give both.
    jwk.pop("key_ops", None)
    return jwk


_THUMBPRINT_MEMBERS = {
    "EC": ("crv", "kty", "x", "y"),
    "RSA": ("e", "kty", "n"),
    "OKP": ("crv", "kty", "x"),
}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint, base64url: a kid that names the key itself."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest()
    return b64url(digest)


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def self_signed_certificate(private_key: PrivateKey, kid: str, issuer: str) -> x509.Certificate:
    """A certificate binding the public key, for verifiers that only take certificates."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"swarm-oauth token signing {kid[:16]}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, issuer[:64] or "swarm-oauth"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC)
    # Ed25519 signs the certificate without a separate digest.
    digest = None if isinstance(private_key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(private_key, digest)
    )


@dataclass(frozen=True, slots=True)
class NewKey:
    """Freshly generated key material, before encryption."""

    kid: str
    alg: str
    private_key: PrivateKey
    certificate_pem: str


def new_key(alg: str, issuer: str) -> NewKey:
    """Generate a key for ``alg`` with its kid (JWK thumbprint) and certificate."""
    private_key = generate_private_key(alg)
    kid = thumbprint(public_jwk(private_key.public_key()))
    cert = self_signed_certificate(private_key, kid, issuer)
    return NewKey(kid, alg, private_key, cert.public_bytes(serialization.Encoding.PEM).decode())


def private_key_der(private_key: PrivateKey) -> bytes:
    """PKCS#8 DER, unencrypted: only ever passed straight to the master key."""
    return private_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key_der(der: bytes) -> PrivateKey:
    """Parse PKCS#8 DER produced by ``private_key_der``."""
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise ValueError("stored signing key has an unsupported type")
    return key
