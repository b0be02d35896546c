"""A reentrant lock per key, for the few things the registrar's workers must not do at
once about one client."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class KeyedLocks:
    """A reentrant lock per key, made on first use and kept (keys are few: one a
    service's client)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.RLock] = {}

    @contextlib.contextmanager
    def held(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock for the block."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        with lock:
            yield
