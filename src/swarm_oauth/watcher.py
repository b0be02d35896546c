"""Follows the store's change log so that caches drop what another process changed.

It also bounds staleness: if the store has not answered for ``stale_after`` seconds, the
caches may be hiding a removal, so ``fresh`` turns false and the token endpoint refuses
with 503 rather than serve from a view it cannot vouch for.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from swarm_oauth.store import ChangeBatch, Store, StoreError

log = logging.getLogger("swarm_oauth.watcher")

POLL_SECONDS = 0.2
STALE_AFTER_SECONDS = 1.0


class ChangeWatcher:
    """Polls ``store.changes_since`` and hands each batch to ``apply`` (in a thread)."""

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

    def fresh(self) -> bool:
        """Whether the last successful poll is recent enough to trust the caches."""
        return time.monotonic() - self._last_success < self._stale_after

    def poll(self) -> None:
        """One blocking round: fetch what changed since the cursor and apply it."""
        started = time.monotonic()
        batch = self._store.changes_since(self._cursor)
        self._apply(batch)
        self._cursor = batch.cursor
        self._last_success = started

    async def run(self) -> None:
        """Poll forever; store errors are logged once per outage and retried."""
        while True:
            try:
                await asyncio.to_thread(self.poll)
                if self._failing:
                    log.info("store reachable again")
                    self._failing = False
            except StoreError as exc:
                if not self._failing:
                    log.warning("store unreachable", extra={"error": str(exc)})
                    self._failing = True
            # PostgreSQL wakes this at once on NOTIFY; SQLite just sleeps the interval.
            await asyncio.to_thread(self._store.wait_for_change, self._interval)
