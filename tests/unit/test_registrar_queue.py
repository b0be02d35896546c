"""The work queue's guarantees, with a stand-in for the reconcile that records its calls."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future

import pytest

from swarm_oauth.registrar.model import Key
from swarm_oauth.registrar.queue import QueueClosed, WorkQueue
from swarm_oauth.registrar.reconcile import Outcome, Result

A, B, C = Key.service("a"), Key.service("b"), Key.client("c")


class Process:
    """Records each run; a run of a key in ``block`` waits until released."""

    def __init__(self) -> None:
        self.calls: Counter[Key] = Counter()
        self.running: Counter[Key] = Counter()
        self.overlaps = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.started = threading.Event()
        self.block: set[Key] = set()
        self.results: dict[Key, list[Result]] = {}
        self.times: dict[Key, list[float]] = {}

    def __call__(self, key: Key) -> Result:
        with self.lock:
            self.times.setdefault(key, []).append(time.monotonic())
            self.running[key] += 1
            if self.running[key] > 1:
                self.overlaps += 1
        try:
            if key in self.block:
                self.started.set()
                assert self.release.wait(5)
            with self.lock:
                self.calls[key] += 1
                queued = self.results.get(key)
                return queued.pop(0) if queued else Result(Outcome.UNCHANGED)
        finally:
            with self.lock:
                self.running[key] -= 1


@pytest.fixture
def process() -> Process:
    return Process()


@pytest.fixture
def make(process: Process) -> Iterator[object]:
    made: list[WorkQueue] = []

    def build(**kwargs: object) -> WorkQueue:
        queue = WorkQueue(process, **kwargs)  # type: ignore[arg-type]
        queue.start()
        made.append(queue)
        return queue

    yield build
    for queue in made:
        queue.close()


def test_a_key_added_while_it_runs_runs_once_more_and_waiting_duplicates_fold(process, make):
    queue = make(workers=4)
    process.block = {A}
    queue.add([A])
    assert process.started.wait(5)  # A runs now and is blocked
    tickets = [queue.add([A, B]) for _ in range(5)]
    process.release.set()
    for ticket in tickets:
        assert ticket.wait(5) == {A: Outcome.UNCHANGED, B: Outcome.UNCHANGED}
    assert queue.wait_idle(5)
    # A: the blocked run and one more (five adds folded); B: between one and five.
    assert process.calls[A] == 2
    assert 1 <= process.calls[B] <= 5
    assert process.overlaps == 0


def test_a_key_is_never_processed_by_two_workers_at_once(process, make):
    queue = make(workers=4)
    original = process.__call__

    def slow(key: Key) -> Result:
        time.sleep(0.002)
        return original(key)

    queue._process = slow
    adders = [
        threading.Thread(target=lambda: [queue.add([A, B, C]) for _ in range(100)])
        for _ in range(4)
    ]
    for thread in adders:
        thread.start()
    for thread in adders:
        thread.join()
    assert queue.wait_idle(10)
    assert process.overlaps == 0
    assert all(process.calls[key] >= 1 for key in (A, B, C))


def test_a_ticket_waits_for_a_run_that_started_after_it(process, make):
    queue = make(workers=1)
    process.block = {A}
    process.results[A] = [Result(Outcome.CHANGED), Result(Outcome.UNCHANGED)]
    first = queue.add([A])
    assert process.started.wait(5)
    second = queue.add([A])  # A is running: this ticket needs the next run
    process.release.set()
    assert first.wait(5) == {A: Outcome.CHANGED}
    assert second.wait(5) == {A: Outcome.UNCHANGED}


def test_an_empty_ticket_is_resolved_at_once(make):
    assert make().add([]).wait(0) == {}


def wait_for_calls(process: Process, key: Key, count: int) -> None:
    deadline = time.monotonic() + 5
    while process.calls[key] < count:
        assert time.monotonic() < deadline, f"{key} ran {process.calls[key]} times"
        time.sleep(0.01)


def test_a_retry_comes_back_after_a_growing_delay_and_success_ends_it(process, make):
    process.results[A] = [Result(Outcome.RETRY), Result(Outcome.RETRY), Result(Outcome.CHANGED)]
    queue = make(retry_delay=0.05, max_retry_delay=1.0)
    queue.add([A])
    wait_for_calls(process, A, 3)
    first, second, third = process.times[A]
    assert second - first >= 0.05 and third - second >= 0.1  # 0.05 s, then twice that
    time.sleep(0.3)
    assert process.calls[A] == 3


def test_runs_that_keep_asking_for_a_recheck_share_one(process, make):
    # Each run of A asks to be looked at again (a rolling update under way); every event,
    # notification and full pass adds another run. The rechecks must not multiply.
    process.results[A] = [Result(Outcome.UNCHANGED, recheck_after=0.3)] * 1000
    queue = make(workers=1)
    for count in range(1, 11):
        queue.add([A])
        wait_for_calls(process, A, count)
    before = process.calls[A]
    time.sleep(1.0)
    # One recheck every 0.3 s: three or four runs, not one chain per add (some thirty).
    assert process.calls[A] - before <= 5


def test_retries_stop_after_the_bound(process, make, caplog):
    process.results[A] = [Result(Outcome.RETRY)] * 10
    queue = make(retry_delay=0.001, max_retry_delay=0.001, max_retries=3)
    queue.add([A])
    wait_for_calls(process, A, 4)
    deadline = time.monotonic() + 5
    while "still failing after 3 retries" not in caplog.text:  # logged once the run returns
        assert time.monotonic() < deadline, "the queue never said it gave up"
        time.sleep(0.01)
    time.sleep(0.1)  # time for a retry the queue should no longer make
    assert process.calls[A] == 4  # the first run and three retries


def test_follow_up_keys_are_processed_after_the_run(process, make):
    process.results[A] = [Result(Outcome.UNCHANGED, then=(C,))]
    queue = make()
    queue.add([A]).wait(5)
    assert queue.wait_idle(5)
    assert process.calls == Counter({A: 1, C: 1})


def test_closing_abandons_waiting_tickets_and_refuses_new_ones(process, make):
    queue = make(workers=1)
    process.block = {A}
    queue.add([A])
    assert process.started.wait(5)
    waiting = queue.add([B])

    def release_once_closed() -> None:
        # A released before close() begins would let the worker take B next; the queue
        # has no public view of being closed.
        deadline = time.monotonic() + 5
        while not queue._closed and time.monotonic() < deadline:
            time.sleep(0.01)
        process.release.set()

    releaser = threading.Thread(target=release_once_closed, daemon=True)
    releaser.start()
    queue.close()
    with pytest.raises(QueueClosed):
        waiting.wait(5)
    with pytest.raises(QueueClosed):
        queue.add([C]).wait(1)
    assert process.calls[B] == 0


def test_a_bug_in_processing_fails_the_key_without_wedging_it(make):
    calls: list[Key] = []

    def broken(key: Key) -> Result:
        calls.append(key)
        raise RuntimeError("bug")

    queue = WorkQueue(broken)
    queue.start()
    try:
        assert queue.add([A]).wait(5) == {A: Outcome.FAILED}
        assert queue.add([A]).wait(5) == {A: Outcome.FAILED}
    finally:
        queue.close()
    assert calls == [A, A]


def test_requests_for_a_full_pass_during_one_share_the_next():
    from swarm_oauth.registrar.controller import Controller
    from tests.support.fakes import SELECTED, FakeRegistry, FakeSwarm
    from tests.support.registrar import InProcessRegistrar

    swarm, registry = FakeSwarm(), FakeRegistry()
    for index in range(3):
        swarm.add_service(f"s{index}", SELECTED)
    registrar = InProcessRegistrar(swarm, registry)
    controller: Controller = registrar.controller
    planning, release = threading.Event(), threading.Event()
    list_services = swarm.list_services

    def gated() -> list:
        planning.set()
        assert release.wait(5)
        return list_services()

    swarm.list_services = gated  # type: ignore[method-assign]
    try:
        first = controller.full_pass()
        assert planning.wait(5)  # the first pass is planning now
        later: list[Future[Counter[Outcome]]] = [controller.full_pass() for _ in range(5)]
        release.set()
        assert all(f is later[0] for f in later) and later[0] is not first
        assert first.result(10) == Counter({Outcome.CHANGED: 3})
        assert later[0].result(10) == Counter({Outcome.UNCHANGED: 3})
    finally:
        registrar.close()
