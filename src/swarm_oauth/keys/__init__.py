"""Signing keys: generation, encryption at rest, rotation, JWKS and certificates."""

from swarm_oauth.keys.keyring import KeyRing, LoadedKey, ensure_signing_key, rotate_keys
from swarm_oauth.keys.master import MasterKey, MasterKeyError
from swarm_oauth.keys.signing import ALGORITHMS

__all__ = [
    "ALGORITHMS",
    "KeyRing",
    "LoadedKey",
    "MasterKey",
    "MasterKeyError",
    "ensure_signing_key",
    "rotate_keys",
]
