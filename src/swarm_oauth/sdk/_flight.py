"""One call in flight at a time, shared by threads and asyncio tasks alike.

A token refresh or a JWKS fetch is wanted by everything that finds the cache stale at
once: fifty threads, fifty tasks, or both, possibly in several event loops. The first
caller becomes the owner and does the work; every other caller waits for the owner's
result instead of starting its own request. The rendezvous is a
``concurrent.futures.Future`` because both worlds can wait on one: threads with
``result()``, tasks with ``asyncio.wrap_future`` (which wakes them on their own loop).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from threading import Lock, Thread
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class _Abandoned(Exception):
    """The owner was cancelled before finishing; a waiter should try again itself."""


class SingleFlight(Generic[T]):
    """Runs at most one ``fn`` at a time; concurrent callers share its outcome."""

    def __init__(self) -> None:
        self._reset()
        _FORKED.add(self)

    def _reset(self) -> None:
        self._lock = Lock()
        self._future: Future[T] | None = None
        self._owner_loop: asyncio.AbstractEventLoop | None = None

    @property
    def busy(self) -> bool:
        """Whether a call is in flight right now."""
        return self._future is not None

    def _join(self, loop: asyncio.AbstractEventLoop | None) -> tuple[Future[T], bool]:
        with self._lock:
            if self._future is not None:
                if loop is None:
                    _refuse_blocking(self._owner_loop)
                return self._future, False
            future: Future[T] = Future()
            # RUNNING, so a cancelled waiter's wrap_future cannot cancel the shared future.
            future.set_running_or_notify_cancel()
            self._future, self._owner_loop = future, loop
            return future, True

    def _settle(self, future: Future[T], result: T | None, error: BaseException | None) -> None:
        with self._lock:
            self._future, self._owner_loop = None, None
        if error is None:
            future.set_result(result)  # type: ignore[arg-type]
        else:
            future.set_exception(error)

    @contextmanager
    def _owning(self, future: Future[T]) -> Iterator[Callable[[T], None]]:
        """Settle ``future`` with the result the block hands over, or with its error."""
        try:
            yield lambda result: self._settle(future, result, None)
        except asyncio.CancelledError:
            self._settle(future, None, _Abandoned())
            raise
        except BaseException as error:
            self._settle(future, None, error)
            raise

    def run(self, fn: Callable[[], T]) -> T:
        """Call ``fn``, or wait for the call already in flight and return its result."""
        while True:
            future, owner = self._join(None)
            if owner:
                with self._owning(future) as settle:
                    settle(fn())
                return future.result()
            try:
                return future.result()
            except _Abandoned:
                continue

    async def arun(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()``, or wait for the call already in flight and return its result."""
        while True:
            future, owner = self._join(asyncio.get_running_loop())
            if owner:
                with self._owning(future) as settle:
                    settle(await fn())
                return future.result()
            try:
                return await asyncio.wrap_future(future)
            except _Abandoned:
                continue


class Background:
    """Runs a refresh through a ``SingleFlight`` without anyone waiting for it: in a thread
    for blocking callers, in a task on the caller's event loop for async ones.

    At most one background refresh runs at a time; a caller that must have the result
    joins the flight itself instead.
    """

    def __init__(
        self,
        flight: SingleFlight[None],
        fetch: Callable[[], None],
        afetch: Callable[[], Awaitable[None]],
        name: str,
    ) -> None:
        """Run ``fetch`` (in a thread named ``name``) or ``afetch`` (in a task) in ``flight``."""
        self._flight = flight
        self._fetch = fetch
        self._afetch = afetch
        self._name = name
        self._reset()
        _FORKED.add(self)

    def _reset(self) -> None:
        self._lock = Lock()
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()  # keeps running tasks alive

    @property
    def running(self) -> bool:
        """Whether a background refresh is under way."""
        return self._running

    def start(self, wanted: Callable[[], bool]) -> None:
        """Start a refresh in a thread if none runs and ``wanted()`` (asked under the lock)."""
        if self._claim(wanted):
            Thread(target=self._run, name=self._name, daemon=True).start()

    def astart(self, wanted: Callable[[], bool]) -> None:
        """Like ``start``, in a task on the running event loop (``RuntimeError`` without
        one, before anything is claimed)."""
        loop = asyncio.get_running_loop()
        if self._claim(wanted):
            task = loop.create_task(self._flight.arun(self._afetch))
            self._tasks.add(task)
            task.add_done_callback(self._finished)

    def _claim(self, wanted: Callable[[], bool]) -> bool:
        with self._lock:
            if self._running or not wanted():
                return False
            self._running = True
            return True

    def _run(self) -> None:
        try:
            self._flight.run(self._fetch)
        finally:
            self._running = False

    def _finished(self, task: asyncio.Task[None]) -> None:
        # A callback, not a ``finally``: it also runs for a task cancelled before it started.
        self._tasks.discard(task)
        self._running = False


# A forked child has its parent's memory but none of its threads: a flight or a
# background refresh under way at the fork would never end there, and every caller of
# the child would wait for it forever (or no refresh would ever start). Each starts idle.
_FORKED: weakref.WeakSet[SingleFlight[Any] | Background] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for each in list(_FORKED):
        each._reset()


os.register_at_fork(after_in_child=_reset_after_fork)


def _refuse_blocking(owner_loop: asyncio.AbstractEventLoop | None) -> None:
    """Raise if this thread runs ``owner_loop``: a blocking wait would stall the owner forever."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        return
    if running is owner_loop:
        raise RuntimeError(
            "a blocking call would wait for a task on this event loop; use the async variant"
        )
