"""Follows the store's change log so that caches drop what another process changed.

It also bounds staleness: if the store has not answered for ``stale_after`` seconds, the
caches may be hiding a removal, so ``fresh`` turns false and the token endpoint refuses
with 503 rather than serve from a view it cannot vouch for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from swarm_oauth.store import ChangeBatch, Store, StoreError

log = logging.getLogger("swarm_oauth.watcher")

POLL_SECONDS = 0.2
STALE_AFTER_SECONDS = 1.0


class ChangeWatcher:
    """Polls ``store.changes_since`` on a thread of its own and hands each batch to
    ``apply``.

    The thread never waits for the event loop: a loop kept busy by load (slow RS256
    signatures, a burst of cache misses) must not delay the polls past ``stale_after``
    and turn every token request into a 503.
    """

    def __init__(
        self,
        store: Store,
        apply: Callable[[ChangeBatch], None],
        *,
        interval: float = POLL_SECONDS,
        stale_after: float = STALE_AFTER_SECONDS,
    ) -> None:
        self._store = store
        self._apply = apply
        self._interval = interval
        self._stale_after = stale_after
        self._cursor = store.last_change()
        self._last_success = time.monotonic()
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="change-watcher", daemon=True)
        self._listeners: list[Callable[[ChangeBatch | None], None]] = []

    def add_listener(self, listener: Callable[[ChangeBatch | None], None]) -> None:
        """Call ``listener`` on the watcher's thread after every round, with the batch
        applied, or None when the store did not answer (metrics follow the store so)."""
        self._listeners.append(listener)

    def seconds_since_success(self) -> float:
        """How long ago the last successful poll started."""
        return time.monotonic() - self._last_success

    def fresh(self) -> bool:
        """Whether the last successful poll is recent enough to trust the caches."""
        return self.seconds_since_success() < self._stale_after

    def poll(self) -> ChangeBatch:
        """One blocking round: fetch what changed since the cursor, apply it, return it."""
        started = time.monotonic()
        batch = self._store.changes_since(self._cursor)
        self._apply(batch)
        self._cursor = batch.cursor
        self._last_success = started
        return batch

    def start(self) -> None:
        """Start following the change log."""
        self._thread.start()

    def _run(self) -> None:
        # Failures are logged once per streak and retried; meanwhile ``fresh`` turns
        # false, so nothing is served from a view that may be stale.
        while not self._stop.is_set():
            batch = None
            try:
                batch = self.poll()
                if self._failing:
                    log.info("following the store's changes again")
                    self._failing = False
            except StoreError as exc:
                self._failed("store unreachable", exc)
            except Exception as exc:  # a bug must not silently end the watcher
                self._failed("applying store changes failed", exc, exc_info=True)
            for listener in self._listeners:
                try:
                    listener(batch)
                except Exception:  # a listener's bug must not end the watcher either
                    log.exception("a change-watcher listener failed")
            # PostgreSQL wakes this at once on NOTIFY; SQLite just sleeps the interval.
            self._store.wait_for_change(self._interval)

    def _failed(self, message: str, exc: Exception, *, exc_info: bool = False) -> None:
        if not self._failing:
            log.error(message, extra={"error": f"{type(exc).__name__}: {exc}"}, exc_info=exc_info)
            self._failing = True

    def close(self) -> None:
        """Stop after the current round (at most one interval)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 1)
