"""Sealing small values that the registrar keeps in Docker configs.

A registration access token (RFC 7592) is as good as the client it manages: whoever holds
it can read and delete the client. The registrar must keep it across restarts, and a swarm
keeps data in two places: secrets, which nobody can read back through the API (the
registrar included), and configs, which anyone with read access to the API can. So the
token goes into a config sealed with AES-256-GCM under a key only the registrar mounts (a
Docker secret): the API's readers see ciphertext, and the swarm's managers, who could
read the key too, are root on every node anyway.

The key file may hold any 32 or more random bytes, raw or as text (``openssl rand -base64
32``): HKDF-SHA256 turns it into the AES key, so its encoding does not matter. Each sealed
value is bound to a context (the client id) as associated data, so a sealed token cannot be
moved onto another client's record.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_KEY_BYTES = 32
NONCE_BYTES = 12
# Prefix of a sealed value: names the scheme, so another can be introduced beside it.
SCHEME = "v1."
_INFO = b"swarm-oauth registrar sealing v1"


class SealingError(Exception):
    """A key file is unusable, or a sealed value cannot be opened (another key, tampered)."""


class Sealer:
    """Seals and opens short values under one key."""

    def __init__(self, key_material: bytes) -> None:
        """``key_material``: the key file's bytes, at least ``MIN_KEY_BYTES`` long."""
        # Text (base64, hex) loses its line end; raw bytes are taken as they are.
        material = key_material.strip() if key_material.isascii() else key_material
        if len(material) < MIN_KEY_BYTES:
            raise SealingError(
                f"the sealing key must hold at least {MIN_KEY_BYTES} bytes "
                f"(it holds {len(material)}); make one with `openssl rand -base64 32`"
            )
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
        self._aead = AESGCM(hkdf.derive(material))

    @classmethod
    def from_file(cls, path: str | Path) -> Sealer:
        """The sealer whose key is the file at ``path``."""
        try:
            material = Path(path).read_bytes()
        except OSError as exc:
            raise SealingError(f"cannot read the sealing key {path}: {exc.strerror}") from None
        return cls(material)

    def seal(self, value: bytes, context: str) -> str:
        """``value`` encrypted and authenticated, bound to ``context``; ASCII text."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value, context.encode())
        return SCHEME + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def open(self, sealed: str, context: str) -> bytes:
        """The value ``seal`` was given with this ``context``; ``SealingError`` otherwise."""
        if not sealed.startswith(SCHEME):
            raise SealingError("not a sealed value of a known scheme")
        body = sealed[len(SCHEME) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise SealingError("a sealed value is not base64") from None
        try:
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError):
            raise SealingError(
                "a sealed value does not open with this key (another key, or tampered)"
            ) from None
