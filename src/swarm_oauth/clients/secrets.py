"""Client secrets: generation, hashing and constant-time verification.

The secrets are generated here from 256 random bits, never chosen by a person, so there is
nothing for a slow password hash (bcrypt, scrypt, argon2, PBKDF2) to protect: guessing a
256-bit value is infeasible at any hash speed. A slow hash would only cost the token
endpoint its throughput (argon2 measured 4 tokens/s against about 5,000). One SHA-256 is
enough to keep the stored value from being usable as the secret itself, and it is verified
by comparing digests with ``hmac.compare_digest`` so timing says nothing about the value.
The ``sha256$`` prefix names the scheme, so a future one can be introduced beside it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_BYTES = 32
SCHEME = "sha256$"
# What a secret is compared with when there is no hash: the same work, and no match.
NO_HASH = (SCHEME + "0" * 64).encode()


def generate_secret() -> str:
    """A new client secret: 256 bits from ``secrets``, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str) -> str:
    """The stored form of ``secret``."""
    # A presented secret may hold a lone surrogate (a JSON "\ud800"): "surrogatepass"
    # gives it bytes no valid text encodes to, so it matches nothing instead of raising.
    return SCHEME + hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def verify_secret(secret: str, stored_hash: str | None) -> bool:
    """Whether ``secret`` matches ``stored_hash``, in time independent of where they differ
    and of whether there is a hash at all (``None`` or empty matches nothing)."""
    against = stored_hash.encode() if stored_hash else NO_HASH
    return hmac.compare_digest(hash_secret(secret).encode(), against) and bool(stored_hash)
