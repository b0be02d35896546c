"""Signing keys: generation, encryption at rest, rotation, JWKS and certificates."""

from swarm_oauth.keys.keyring import (
    KeyRing,
    LoadedKey,
    check_master_key,
    ensure_signing_key,
    retire_key,
    rotate_keys,
)
from swarm_oauth.keys.master import MasterKey, MasterKeyError
from swarm_oauth.keys.signing import ALGORITHMS

__all__ = [
    "ALGORITHMS",
    "KeyRing",
    "LoadedKey",
    "MasterKey",
    "MasterKeyError",
    "check_master_key",
    "ensure_signing_key",
    "retire_key",
    "rotate_keys",
]
