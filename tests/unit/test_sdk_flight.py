"""SingleFlight: one call in flight, shared by threads and asyncio tasks."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest

from swarm_oauth.sdk._flight import Background, SingleFlight

N = 50


class Work:
    """A call that counts itself and blocks until every caller has arrived."""

    def __init__(self, callers: int) -> None:
        self.calls = 0
        self.callers = callers
        self.arrived = 0
        self.cond = threading.Condition()
        self.done = False

    def arrive(self) -> None:
        with self.cond:
            self.arrived += 1
            self.cond.notify_all()

    def __call__(self) -> str:
        # Like a real refresh, re-check under the flight: a late caller finds it done.
        if self.done:
            return "result"
        with self.cond:
            self.calls += 1
            assert self.cond.wait_for(lambda: self.arrived >= self.callers, timeout=30)
        self.done = True
        return "result"


def test_threads_share_one_call() -> None:
    flight: SingleFlight[str] = SingleFlight()
    work = Work(N)
    results: list[str] = []

    def caller() -> None:
        work.arrive()
        results.append(flight.run(work))

    threads = [threading.Thread(target=caller) for _ in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert work.calls == 1
    assert results == ["result"] * N


def test_tasks_share_one_call() -> None:
    flight: SingleFlight[str] = SingleFlight()
    calls = 0
    release = asyncio.Event()

    async def work() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "result"

    async def main() -> list[str]:
        tasks = [asyncio.create_task(flight.arun(work)) for _ in range(N)]
        await asyncio.sleep(0)  # every task runs up to its first wait
        assert flight.busy
        release.set()
        return await asyncio.gather(*tasks)

    assert asyncio.run(main()) == ["result"] * N
    assert calls == 1


def test_threads_wait_for_a_task_owner() -> None:
    flight: SingleFlight[str] = SingleFlight()
    calls = 0
    results: list[str] = []

    async def main() -> str:
        release = asyncio.Event()

        async def work() -> str:
            nonlocal calls
            calls += 1
            await release.wait()
            return "result"

        owner = asyncio.create_task(flight.arun(work))
        await asyncio.sleep(0)
        assert flight.busy
        threads = [
            threading.Thread(target=lambda: results.append(flight.run(lambda: "second call")))
            for _ in range(10)
        ]
        for thread in threads:
            thread.start()
        release.set()
        value = await owner
        await asyncio.to_thread(lambda: [thread.join() for thread in threads])
        return value

    assert asyncio.run(main()) == "result"
    assert calls == 1
    assert results == ["result"] * 10


def test_error_reaches_every_waiter_and_next_call_runs_again() -> None:
    flight: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()

    async def failing() -> str:
        await release.wait()
        raise ValueError("boom")

    async def main() -> list[object]:
        tasks = [asyncio.create_task(flight.arun(failing)) for _ in range(5)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(main())
    assert all(isinstance(outcome, ValueError) for outcome in outcomes)
    assert not flight.busy
    assert flight.run(lambda: "fresh") == "fresh"


def test_cancelled_owner_hands_over_to_a_waiter() -> None:
    flight: SingleFlight[str] = SingleFlight()
    calls = 0

    async def work() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()  # the first owner hangs until cancelled
        return f"call {calls}"

    async def main() -> tuple[bool, str]:
        owner = asyncio.create_task(flight.arun(work))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(flight.arun(work))
        await asyncio.sleep(0)
        owner.cancel()
        await asyncio.gather(owner, return_exceptions=True)
        return owner.cancelled(), await waiter

    assert asyncio.run(main()) == (True, "call 2")


def test_cancelled_waiter_does_not_cancel_the_flight() -> None:
    flight: SingleFlight[str] = SingleFlight()
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "result"

    async def main() -> str:
        owner = asyncio.create_task(flight.arun(work))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(flight.arun(work))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        release.set()
        return await owner

    assert asyncio.run(main()) == "result"


def test_blocking_wait_on_the_owners_own_loop_is_refused() -> None:
    flight: SingleFlight[str] = SingleFlight()

    async def main() -> None:
        release = asyncio.Event()

        async def work() -> str:
            await release.wait()
            return "result"

        owner = asyncio.create_task(flight.arun(work))
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="async variant"):
            flight.run(lambda: "never")
        release.set()
        assert await owner == "result"

    asyncio.run(main())


def test_a_background_task_asked_for_without_an_event_loop_claims_nothing() -> None:
    calls: list[str] = []

    async def afetch() -> None:
        calls.append("task")

    background = Background(SingleFlight(), lambda: calls.append("thread"), afetch, "test")
    with pytest.raises(RuntimeError):
        background.astart(lambda: True)
    assert not background.running  # a later refresh is not locked out for good

    async def from_a_loop() -> None:
        background.astart(lambda: True)
        assert background.running
        while background.running:
            await asyncio.sleep(0.01)

    asyncio.run(from_a_loop())
    assert calls == ["task"]


def test_a_child_forked_while_a_flight_is_under_way_starts_idle() -> None:
    # A service forks its workers (gunicorn, multiprocessing) after a refresh began in a
    # thread: the child has no such thread, and must not wait for it forever.
    flight: SingleFlight[int] = SingleFlight()
    background = Background(SingleFlight(), lambda: None, _never, "refresh")
    release = threading.Event()
    owner = threading.Thread(target=flight.run, args=(lambda: release.wait(10) and 1,))
    owner.start()
    background._claim(lambda: True)
    while not flight.busy:
        time.sleep(0.001)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: answer through the pipe, then leave at once
        signal.alarm(5)  # a child stuck waiting dies, and the parent reads nothing
        try:
            state = (flight.busy, background.running, flight.run(lambda: 2))
            os.write(write, repr(state).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        with os.fdopen(read) as pipe:
            answer = pipe.read()
    finally:
        release.set()
        owner.join(10)
        os.waitpid(pid, 0)
    assert answer == "(False, False, 2)"
    assert flight.busy is False  # the parent's flight ended as usual


async def _never() -> None:
    raise AssertionError("not called")
