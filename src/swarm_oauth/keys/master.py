"""The master key: encrypts signing keys at rest (AES-256-GCM)."""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
FORMAT_VERSION = b"\x01"


class MasterKeyError(Exception):
    """The master key is missing, malformed, or does not open a stored key."""


class MasterKey:
    """A 256-bit AES-GCM key; the kid of each signing key is bound in as associated data,
    so an encrypted key cannot be swapped onto another record."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"the master key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return "MasterKey(<redacted>)"

    @staticmethod
    def generate_text() -> str:
        """A new master key as the text a key file holds (URL-safe base64)."""
        return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Parse a key file's content: base64 (standard or URL-safe) of 32 bytes."""
        cleaned = text.strip()
        try:
            raw = base64.urlsafe_b64decode(cleaned.replace("+", "-").replace("/", "_"))
        except (binascii.Error, ValueError):
            raise MasterKeyError("the master key must be base64 of 32 random bytes") from None
        return cls(raw)

    def encrypt(self, plaintext: bytes, associated: bytes) -> bytes:
        """Version byte, nonce, then ciphertext with its tag."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        return FORMAT_VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated)

    def decrypt(self, blob: bytes, associated: bytes) -> bytes:
        """Reverse ``encrypt``; ``MasterKeyError`` when this key did not encrypt it."""
        if blob[:1] != FORMAT_VERSION or len(blob) < 1 + NONCE_BYTES + 16:
            raise MasterKeyError("unknown encrypted key format")
        nonce, ciphertext = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, ciphertext, associated)
        except InvalidTag:
            raise MasterKeyError(
                "a stored signing key does not open with this master key "
                "(was the master key changed?)"
            ) from None
