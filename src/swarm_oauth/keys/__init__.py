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
    rotation_due_at,
)
from swarm_oauth.keys.master import MasterKey, MasterKeyError
from swarm_oauth.keys.material import ALGORITHMS
from swarm_oauth.keys.rotation import KeyRotator, RotationPolicy

__all__ = [
    "ALGORITHMS",
    "KeyRing",
    "KeyRotator",
    "LastSigningKey",
    "LoadedKey",
    "MasterKey",
    "MasterKeyError",
    "RotationPolicy",
    "UnknownKey",
    "check_master_key",
    "ensure_signing_key",
    "retire_key",
    "rotate_keys",
    "rotation_due_at",
]
