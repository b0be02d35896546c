"""The registrar's one work queue, with the semantics of Kubernetes' client-go workqueue.

- A key waiting in the queue is not queued twice: adding it again folds into the wait.
- A key is never processed by two workers at once: one added while it is being processed
  is marked dirty and processed once more when the current run ends (Docker may have
  changed meanwhile), so no per-key lock is needed.
- A run that asks for a retry puts the key back after an exponential backoff, up to a
  bound; a later successful run forgets the failures. A run may also ask to be looked at
  again after a while (it waits for something, like a rolling update). A key waits for
  at most one such moment, the earliest asked for: runs that keep asking (one per event,
  notification or full pass) do not multiply it.
- ``add`` returns a ``Ticket`` that resolves when every key it added has been processed
  by a run that started after the add, which is how a full pass waits for its keys.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future

from swarm_oauth.registrar.model import Key
from swarm_oauth.registrar.reconcile import Outcome, Result

logger = logging.getLogger(__name__)


class QueueClosed(Exception):
    """The queue closed before a ticket's keys were processed."""


class Ticket:
    """Resolves to each added key's outcome once all of them have been processed."""

    def __init__(self, keys: Iterable[Key], seq: int) -> None:
        self.seq = seq
        self._pending = set(keys)
        self._outcomes: dict[Key, Outcome] = {}
        self.future: Future[Mapping[Key, Outcome]] = Future()
        if not self._pending:
            self.future.set_result({})

    def wait(self, timeout: float | None = None) -> Mapping[Key, Outcome]:
        """Block until resolved; the outcome of each key."""
        return self.future.result(timeout)

    def _done(self, key: Key, outcome: Outcome) -> bool:
        """Record one key's outcome; True once the ticket is resolved."""
        if key not in self._pending:
            return False
        self._pending.discard(key)
        self._outcomes[key] = outcome
        if self._pending:
            return False
        self.future.set_result(dict(self._outcomes))
        return True

    def _abandon(self) -> None:
        if not self.future.done():
            self.future.set_exception(QueueClosed("the registrar is stopping"))


class WorkQueue:
    """Keys processed by ``process`` on a pool of worker threads."""

    def __init__(
        self,
        process: Callable[[Key], Result],
        *,
        workers: int = 4,
        retry_delay: float = 1.0,
        max_retry_delay: float = 60.0,
        max_retries: int = 10,
    ) -> None:
        self._process = process
        self._retry_delay = retry_delay
        self._max_retry_delay = max_retry_delay
        self._max_retries = max_retries
        lock = threading.Lock()
        self._cond = threading.Condition(lock)  # a key is waiting, or the queue closed
        self._timer = threading.Condition(lock)  # a retry was scheduled, or closed
        self._idle = threading.Condition(lock)  # nothing waits or runs any more
        self._queue: deque[Key] = deque()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        self._failures: dict[Key, int] = {}
        self._delayed: list[tuple[float, int, Key]] = []
        # The moment each delayed key is due; heap entries for other moments are stale.
        self._due: dict[Key, float] = {}
        self._tiebreak = itertools.count()
        self._tickets: dict[Key, list[Ticket]] = {}
        # Every add takes the next number; a run covers every add numbered up to the
        # counter's value when it started.
        self._seq = 0
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"reconcile-{n}", daemon=True)
            for n in range(workers)
        ]
        self._threads.append(threading.Thread(target=self._retry, name="retry", daemon=True))

    def start(self) -> None:
        """Start the workers."""
        for thread in self._threads:
            thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Stop taking keys, let runs in progress finish, abandon waiting tickets."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            self._timer.notify_all()
            tickets = [t for waiting in self._tickets.values() for t in waiting]
            self._tickets.clear()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))
        for ticket in tickets:
            ticket._abandon()

    def add(self, keys: Iterable[Key]) -> Ticket:
        """Queue ``keys``; the ticket resolves once each has been processed after now."""
        keys = set(keys)
        with self._cond:
            self._seq += 1
            ticket = Ticket(keys, self._seq)
            if self._closed:
                ticket._abandon()
                return ticket
            for key in keys:
                self._tickets.setdefault(key, []).append(ticket)
                self._enqueue(key)
            return ticket

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no key waits or runs (scheduled retries aside); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._queue and not self._processing, timeout)

    def depth(self) -> int:
        """How many keys wait or are being processed: 0 once everything queued is done."""
        with self._cond:
            return len(self._queue) + len(self._processing)

    def _enqueue(self, key: Key) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:  # else it is queued again when its run ends
            self._queue.append(key)
            self._cond.notify()

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                key = self._queue.popleft()
                self._dirty.discard(key)
                self._processing.add(key)
                covered = self._seq
            try:
                result = self._process(key)
            except Exception:  # a bug must not leave the key marked as processing forever
                logger.exception("%s: processing failed", key)
                result = Result(Outcome.FAILED)
            self._finish(key, result, covered)

    def _finish(self, key: Key, result: Result, covered: int) -> None:
        with self._cond:
            self._processing.discard(key)
            waiting = self._tickets.get(key, [])
            still = [t for t in waiting if t.seq > covered]
            for ticket in waiting:
                if ticket.seq <= covered:
                    ticket._done(key, result.outcome)
            if still:
                self._tickets[key] = still
            else:
                self._tickets.pop(key, None)
            if key in self._dirty:
                self._queue.append(key)
                self._cond.notify()
            for follow_up in result.then:
                self._enqueue(follow_up)
            if not self._queue and not self._processing:
                self._idle.notify_all()
            if result.outcome is Outcome.RETRY:
                self._schedule_retry(key)
            else:
                self._failures.pop(key, None)
                if result.recheck_after is not None:
                    self._schedule(key, result.recheck_after)

    def _schedule_retry(self, key: Key) -> None:
        failures = self._failures.get(key, 0) + 1
        if failures > self._max_retries:
            logger.error(
                "%s: still failing after %d retries; the next full pass tries again",
                key,
                self._max_retries,
            )
            self._failures.pop(key, None)
            return
        self._failures[key] = failures
        self._schedule(key, min(self._retry_delay * 2 ** (failures - 1), self._max_retry_delay))

    def _schedule(self, key: Key, delay: float) -> None:
        due = time.monotonic() + delay
        if self._due.get(key, due + 1) <= due:
            return  # already due as soon or sooner
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._tiebreak), key))
        self._timer.notify()

    def _retry(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    now = time.monotonic()
                    if self._delayed and self._delayed[0][0] <= now:
                        break
                    timeout = self._delayed[0][0] - now if self._delayed else None
                    self._timer.wait(timeout)
                if self._closed:
                    return
                due, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) != due:
                    continue  # superseded by an earlier moment for the key
                del self._due[key]
                self._enqueue(key)
