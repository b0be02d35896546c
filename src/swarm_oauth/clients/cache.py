"""The token endpoint's in-memory view of client records.

A token request must not cost a store round trip for a client that has not changed, yet
a removal or rotation made by another process must take effect within a second. Entries
are therefore kept until the store's change log names them (see ``watcher.py``).
"""

from __future__ import annotations

import threading

from swarm_oauth.store import ChangeBatch, ClientRecord, Store

MAX_ENTRIES = 100_000
_MISSING = object()


class ClientCache:
    """Client records by id, including "no such client" answers."""

    def __init__(self, store: Store, max_entries: int = MAX_ENTRIES) -> None:
        self._store = store
        self._entries: dict[str, ClientRecord | None] = {}
        self._max_entries = max_entries
        # Bumped by every invalidation; a load that raced with one does not cache its
        # possibly stale answer.
        self._epoch = 0
        self._lock = threading.Lock()

    def peek(self, client_id: str) -> tuple[bool, ClientRecord | None]:
        """``(True, answer)`` when cached (the answer may be None: no such client),
        ``(False, None)`` when the store must be asked with ``load``."""
        answer = self._entries.get(client_id, _MISSING)
        if answer is _MISSING:
            return False, None
        return True, answer  # type: ignore[return-value]

    def load(self, client_id: str) -> ClientRecord | None:
        """Ask the store (blocking) and remember the answer."""
        epoch = self._epoch
        record = self._store.get_client(client_id)
        with self._lock:
            if epoch == self._epoch:
                if len(self._entries) >= self._max_entries:
                    # Unknown ids could otherwise grow the cache without bound.
                    self._entries.clear()
                self._entries[client_id] = record
        return record

    def apply(self, batch: ChangeBatch) -> None:
        """Drop what the change log says changed (everything, if the log had a gap)."""
        if batch.complete and not batch.changes:
            return
        with self._lock:
            self._epoch += 1
            if not batch.complete:
                self._entries.clear()
                return
            for change in batch.changes:
                if change.kind == "client":
                    self._entries.pop(change.key, None)

    def forget(self, client_id: str) -> None:
        """Drop one client (this process just changed it)."""
        with self._lock:
            self._epoch += 1
            self._entries.pop(client_id, None)
