"""Token ids (``jti``, RFC 7519 §4.1.7): 128 bits from the system's CSPRNG each.

``secrets.token_urlsafe(16)`` makes one ``getrandom`` system call per token, which the
profile put at about 15 µs of a token's time on the server. The bytes are read here
4 KiB at a time, and each id takes 16 of them that no other id has had.
"""

from __future__ import annotations

import os
import secrets
import threading

from swarm_oauth.keys.material import b64url

ID_BYTES = 16
POOL_BYTES = 4096


class TokenIds:
    """Hands out unique random token ids; safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._offset = 0
        # A forked child starts with its parent's unread bytes: it must not hand them
        # out as well, or two processes would issue tokens with the same ids.
        os.register_at_fork(after_in_child=self._forget)

    def next(self) -> str:
        """A new id: 16 random bytes as unpadded base64url (22 characters)."""
        with self._lock:
            if self._offset + ID_BYTES > len(self._pool):
                self._pool = secrets.token_bytes(POOL_BYTES)
                self._offset = 0
            start = self._offset
            self._offset = start + ID_BYTES
            raw = self._pool[start : start + ID_BYTES]
        return b64url(raw)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._offset = 0


token_ids = TokenIds()
