"""The token endpoint's in-memory view of client records.

A token request must not cost a store round trip for a client that has not changed, yet
a removal or rotation made by another process must take effect within a second. Entries
are therefore kept until the store's change log names them (see ``watcher.py``).

Anyone can ask for a token, so what the cache holds is bounded: known clients and "no
such client" answers live in two tables, each capped by entries and by bytes, and the
oldest entry makes room for a new one. A flood of unknown ids thus churns only the
table of unknown ids and never evicts the clients that legitimately ask. The token
endpoint lets no id outside the client-id grammar reach ``load``, so an unknown id
costs at most 128 characters.
"""

from __future__ import annotations

import json
import threading

from swarm_oauth.store import ChangeBatch, ClientRecord, Store

MAX_ENTRIES = 100_000
MAX_BYTES = 64 * 1024 * 1024
MAX_UNKNOWN_ENTRIES = 10_000
MAX_UNKNOWN_BYTES = 4 * 1024 * 1024
# A rough per-entry cost of the dict slot, the key and the record objects, so that the
# byte cap also bounds tables of tiny entries.
ENTRY_OVERHEAD_BYTES = 256
_MISSING = object()


def record_size(client_id: str, record: ClientRecord | None) -> int:
    """An estimate of the memory one entry holds, in bytes."""
    size = ENTRY_OVERHEAD_BYTES + len(client_id)
    if record is not None:
        size += len(record.secret_hash) + len(record.previous_secret_hash or "")
        size += sum(map(len, record.scopes)) + sum(map(len, record.audiences))
        size += len(json.dumps(dict(record.metadata)))
    return size


class _Table:
    """Entries in insertion order, capped by count and by bytes; the oldest go first.

    Readers use ``entries`` without a lock (single dict lookups are atomic); every write
    happens under the cache's lock.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.entries: dict[str, ClientRecord | None] = {}
        self._sizes: dict[str, int] = {}
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0

    def put(self, client_id: str, record: ClientRecord | None) -> None:
        self.pop(client_id)
        size = record_size(client_id, record)
        if size > self._max_bytes:
            return
        while self.entries and (
            len(self.entries) >= self._max_entries or self.bytes + size > self._max_bytes
        ):
            self.pop(next(iter(self.entries)))
        self.entries[client_id] = record
        self._sizes[client_id] = size
        self.bytes += size

    def pop(self, client_id: str) -> None:
        self.entries.pop(client_id, None)
        self.bytes -= self._sizes.pop(client_id, 0)

    def clear(self) -> None:
        self.entries.clear()
        self._sizes.clear()
        self.bytes = 0


class ClientCache:
    """Client records by id, including "no such client" answers."""

    def __init__(
        self,
        store: Store,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        *,
        max_unknown_entries: int = MAX_UNKNOWN_ENTRIES,
        max_unknown_bytes: int = MAX_UNKNOWN_BYTES,
    ) -> None:
        self._store = store
        self._known = _Table(max_entries, max_bytes)
        self._unknown = _Table(max_unknown_entries, max_unknown_bytes)
        # Bumped by every invalidation; a load that raced with one does not cache its
        # possibly stale answer.
        self._epoch = 0
        self._lock = threading.Lock()

    def peek(self, client_id: str) -> tuple[bool, ClientRecord | None]:
        """``(True, answer)`` when cached (the answer may be None: no such client),
        ``(False, None)`` when the store must be asked with ``load``."""
        answer = self._known.entries.get(client_id, _MISSING)
        if answer is not _MISSING:
            return True, answer  # type: ignore[return-value]
        if client_id in self._unknown.entries:
            return True, None
        return False, None

    def load(self, client_id: str) -> ClientRecord | None:
        """Ask the store (blocking) and remember the answer."""
        epoch = self._epoch
        record = self._store.get_client(client_id)
        with self._lock:
            if epoch == self._epoch:
                self._forget(client_id)
                (self._unknown if record is None else self._known).put(client_id, record)
        return record

    def usage(self) -> dict[str, int]:
        """Entries and estimated bytes held, for known and unknown ids."""
        return {
            "known_entries": len(self._known.entries),
            "known_bytes": self._known.bytes,
            "unknown_entries": len(self._unknown.entries),
            "unknown_bytes": self._unknown.bytes,
        }

    def apply(self, batch: ChangeBatch) -> None:
        """Drop what the change log says changed (everything, if the log had a gap)."""
        if batch.complete and not batch.changes:
            return
        with self._lock:
            self._epoch += 1
            if not batch.complete:
                self._known.clear()
                self._unknown.clear()
                return
            for change in batch.changes:
                if change.kind == "client":
                    self._forget(change.key)

    def forget(self, client_id: str) -> None:
        """Drop one client (this process just changed it)."""
        with self._lock:
            self._epoch += 1
            self._forget(client_id)

    def _forget(self, client_id: str) -> None:
        self._known.pop(client_id)
        self._unknown.pop(client_id)
