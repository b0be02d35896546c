"""The registrar's background triggers: Docker service events and the periodic full pass.

Both only say "look at this now": an event enqueues its service's key, the timer asks
the controller for a full pass. What to do is decided by the reconcile, from Docker.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Protocol

from swarm_oauth.registrar.controller import Controller, PassOutcomes
from swarm_oauth.registrar.model import Key
from swarm_oauth.registrar.ports import RegistrarError

logger = logging.getLogger(__name__)


class EventStream(Protocol):
    """``(action, service id, service name)`` per service event, until closed."""

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        """Yield events until the stream ends or is closed."""
        ...

    def close(self) -> None:
        """Make a thread reading the stream see its end."""


class EventWatcher:
    """Enqueues the key of every service Docker reports an event for; reconnects with
    backoff when the stream drops, and asks for a full pass after a gap, since events are
    not replayed."""

    def __init__(
        self,
        connect: Callable[[], EventStream],
        controller: Controller,
        *,
        max_backoff: float = 30.0,
    ) -> None:
        self._connect = connect
        self._controller = controller
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
                    self._controller.full_pass()
                connected_before = True
                for _action, service_id, _name in stream:
                    backoff = 0.5
                    self._controller.enqueue([Key.service(service_id)])
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
    """Runs a full pass at start, then every ``interval`` seconds."""

    def __init__(
        self, controller: Controller, interval: float, *, retry_delay: float = 5.0
    ) -> None:
        self._controller = controller
        self._interval = interval
        self._retry_delay = retry_delay
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="resync", daemon=True)

    def start(self) -> None:
        """Start the first pass now, in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop waiting for the next pass; a pass in progress ends with the queue."""
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            delay = self._interval
            try:
                self._wait(self._controller.full_pass())
            except RegistrarError as exc:
                logger.warning("full pass failed, retrying in %.0fs: %s", self._retry_delay, exc)
                delay = min(self._retry_delay, self._interval)
            except Exception:
                logger.exception("full pass failed")
            self._stop.wait(delay)

    def _wait(self, future: Future[PassOutcomes]) -> None:
        # Wakes now and then so that stop() is not held up by a long pass.
        while not self._stop.is_set():
            try:
                future.result(timeout=0.5)
                return
            except TimeoutError:
                continue
