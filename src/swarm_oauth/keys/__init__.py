"""Signing keys: generation, encryption at rest, rotation, JWKS and certificates."""

from swarm_oauth.keys.keyring import (
    KeyRing,
    LastSigningKey,
    LoadedKey,
    UnknownKey,
    check_master_key,
    ensure_signing_key,
    retire_key,
    rotate_keys,
)
from swarm_oauth.keys.master import MasterKey, MasterKeyError
from swarm_oauth.keys.material import ALGORITHMS

__all__ = [
    "ALGORITHMS",
    "KeyRing",
    "LastSigningKey",
    "LoadedKey",
    "MasterKey",
    "MasterKeyError",
    "UnknownKey",
    "check_master_key",
    "ensure_signing_key",
    "retire_key",
    "rotate_keys",
]
