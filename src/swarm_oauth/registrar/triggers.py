"""The registrar's background triggers: Docker service events and the periodic full pass.

Both only say "look at this now"; the reconciler decides what to do from Docker's state.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from swarm_oauth.registrar.ports import RegistrarError
from swarm_oauth.registrar.reconcile import Outcome, Reconciler

logger = logging.getLogger(__name__)


class EventStream(Protocol):
    """``(action, service id, service name)`` per service event, until closed."""

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        """Yield events until the stream ends or is closed."""
        ...

    def close(self) -> None:
        """Make a thread reading the stream see its end."""


class HintQueue:
    """Runs ``reconcile_service`` for hints on a few threads, folding duplicates.

    A hint already waiting is not queued twice; one that arrives while the same service
    is being reconciled runs again afterwards, since Docker may have changed meanwhile.
    A transiently failed hint is retried a few times with a growing delay.
    """

    def __init__(
        self,
        reconciler: Reconciler,
        *,
        workers: int = 4,
        retry_delay: float = 5.0,
        retries: int = 3,
    ) -> None:
        self._reconciler = reconciler
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="hint")
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._retry_delay = retry_delay
        self._retries = retries
        self._timers: set[threading.Timer] = set()
        self._closed = False

    def submit(self, ref: str, attempt: int = 0) -> None:
        """Reconcile ``ref`` (a service id or name) soon; nothing once closed."""
        with self._lock:
            if self._closed or ref in self._pending:
                return
            self._pending.add(ref)
            # Under the lock, so close() cannot shut the pool down between check and submit.
            self._pool.submit(self._run, ref, attempt)

    def close(self) -> None:
        """Drop queued retries and wait for running hints."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, set()
        for timer in timers:
            timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, ref: str, attempt: int) -> None:
        with self._lock:
            self._pending.discard(ref)
        if self._reconciler.reconcile_service(ref) is Outcome.RETRY and attempt < self._retries:
            self._later(ref, attempt + 1)

    def _later(self, ref: str, attempt: int) -> None:
        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
            self.submit(ref, attempt)

        timer = threading.Timer(self._retry_delay * 2 ** (attempt - 1), fire)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()


class EventWatcher:
    """Feeds Docker service events to a ``HintQueue``; reconnects with backoff when the
    stream drops, and asks for a full pass after a gap, since events are not replayed."""

    def __init__(
        self,
        connect: Callable[[], EventStream],
        hints: HintQueue,
        on_gap: Callable[[], None],
        *,
        max_backoff: float = 30.0,
    ) -> None:
        self._connect = connect
        self._hints = hints
        self._on_gap = on_gap
        self._max_backoff = max_backoff
        self._stop = threading.Event()
        self._stream: EventStream | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="docker-events", daemon=True)

    def start(self) -> None:
        """Start reading in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Close the stream and wait for the thread."""
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        backoff = 0.5
        connected_before = False
        while not self._stop.is_set():
            try:
                stream = self._connect()
                with self._lock:
                    self._stream = stream
                if self._stop.is_set():
                    stream.close()
                    return
                if connected_before:
                    logger.info("docker event stream reconnected; running a full pass")
                    self._on_gap()
                connected_before = True
                for _action, service_id, _name in stream:
                    backoff = 0.5
                    self._hints.submit(service_id)
                if self._stop.is_set():
                    return
                logger.warning("docker event stream ended; reconnecting in %.1fs", backoff)
            except Exception as exc:  # a bug or a garbled event must not end the watching
                logger.warning(
                    "docker event stream failed, retrying in %.1fs: %s: %s",
                    backoff,
                    type(exc).__name__,
                    exc,
                )
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)


class Resync:
    """Runs a full pass at start, then every ``interval`` seconds or when ``request``ed."""

    def __init__(
        self, reconciler: Reconciler, interval: float, *, retry_delay: float = 5.0
    ) -> None:
        self._reconciler = reconciler
        self._interval = interval
        self._retry_delay = retry_delay
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="full-pass", daemon=True)

    def start(self) -> None:
        """Start the first pass now, in a background thread."""
        self._thread.start()

    def request(self) -> None:
        """Run a full pass as soon as the current one (if any) ends."""
        self._wake.set()

    def stop(self) -> None:
        """Stop after the pass in progress, if any."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            delay = self._interval
            try:
                self._reconciler.full_pass()
            except RegistrarError as exc:
                logger.warning("full pass failed, retrying in %.0fs: %s", self._retry_delay, exc)
                delay = min(self._retry_delay, self._interval)
            except Exception:
                logger.exception("full pass failed")
            self._wake.wait(delay)
