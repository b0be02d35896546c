"""The background triggers: folding hints, retrying, reconnecting the event stream."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from swarm_oauth.registrar.ports import TransientError
from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.triggers import EventWatcher, HintQueue, Resync


def eventually(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Recorder:
    """Stands for the reconciler; blocks the first hint until released."""

    def __init__(self, outcomes: list[Outcome] | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.passes = 0
        self.release = threading.Event()
        self.started = threading.Event()
        self.outcomes = outcomes or []

    def reconcile_service(self, ref: str) -> Outcome:
        self.started.set()
        self.release.wait(5)
        self.calls[ref] += 1
        return self.outcomes.pop(0) if self.outcomes else Outcome.UNCHANGED

    def full_pass(self) -> Counter[Outcome]:
        self.passes += 1
        if self.passes == 1:
            raise TransientError("docker down")
        return Counter()


def test_duplicate_hints_fold_but_one_arriving_during_a_run_runs_again():
    recorder = Recorder()
    queue = HintQueue(recorder, workers=1)  # type: ignore[arg-type]
    queue.submit("a")
    recorder.started.wait(5)  # "a" runs now and is blocked
    for _ in range(5):
        queue.submit("a")  # fold into one waiting hint
        queue.submit("b")
    recorder.release.set()
    eventually(lambda: recorder.calls == Counter({"a": 2, "b": 1}))
    queue.close()


def test_a_transient_failure_is_retried_with_a_delay():
    recorder = Recorder([Outcome.RETRY, Outcome.RETRY, Outcome.CHANGED])
    recorder.release.set()
    queue = HintQueue(recorder, retry_delay=0.01, retries=3)  # type: ignore[arg-type]
    queue.submit("a")
    eventually(lambda: recorder.calls["a"] == 3)
    time.sleep(0.1)
    assert recorder.calls["a"] == 3  # success ends the retries
    queue.close()


class Stream:
    def __init__(self, events: list[tuple[str, str, str]], fail: bool = False) -> None:
        self.events = events
        self.fail = fail
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        yield from self.events
        if self.fail:
            raise TransientError("stream broke")
        self.closed.wait(5)

    def close(self) -> None:
        self.closed.set()


def test_the_event_watcher_reconnects_and_asks_for_a_pass_after_a_gap():
    recorder = Recorder()
    recorder.release.set()
    streams = [
        Stream([("create", "id1", "a"), ("update", "id1", "a")], fail=True),
        Stream([("remove", "id2", "b")]),
    ]
    connects: list[int] = []
    gaps: list[int] = []

    def connect() -> Stream:
        connects.append(1)
        if len(connects) == 2:
            raise TransientError("engine restarting")
        return streams.pop(0)

    queue = HintQueue(recorder)  # type: ignore[arg-type]
    watcher = EventWatcher(connect, queue, lambda: gaps.append(1), max_backoff=0.05)
    watcher.start()
    eventually(lambda: recorder.calls["id2"] == 1)
    assert recorder.calls["id1"] >= 1
    assert len(connects) == 3 and len(gaps) == 1
    watcher.stop()
    queue.close()


def test_resync_runs_at_start_retries_a_failed_pass_and_runs_on_request():
    recorder = Recorder()
    resync = Resync(recorder, interval=3600, retry_delay=0.01)  # type: ignore[arg-type]
    resync.start()
    eventually(lambda: recorder.passes == 2)  # the first failed, retried soon after
    resync.request()
    eventually(lambda: recorder.passes == 3)
    resync.stop()


def test_hints_submitted_while_the_queue_closes_are_dropped_without_an_error():
    recorder = Recorder()
    recorder.release.set()
    for _ in range(20):  # the race is between a submit's check and its hand-over
        queue = HintQueue(recorder, workers=2)  # type: ignore[arg-type]
        errors: list[BaseException] = []

        def flood(queue: HintQueue = queue, errors: list[BaseException] = errors) -> None:
            try:
                for i in range(500):
                    queue.submit(f"service-{i}")
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=flood) for _ in range(3)]
        for thread in threads:
            thread.start()
        queue.close()
        for thread in threads:
            thread.join()
        assert errors == []
        queue.submit("after-close")  # a no-op
    assert recorder.calls["after-close"] == 0


class GarbledStream(Stream):
    """A stream whose next event cannot be decoded."""

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        yield from self.events
        raise ValueError("Expecting value: line 1 column 1 (char 0)")


def test_the_event_watcher_survives_unexpected_errors(caplog):
    recorder = Recorder()
    recorder.release.set()
    streams: list[Stream] = [
        GarbledStream([("create", "id1", "a")]),
        Stream([("create", "id2", "b")]),
    ]
    connects: list[int] = []

    def connect() -> Stream:
        connects.append(1)
        if len(connects) == 2:
            raise RuntimeError("a bug in the adapter")
        return streams.pop(0)

    queue = HintQueue(recorder)  # type: ignore[arg-type]
    watcher = EventWatcher(connect, queue, lambda: None, max_backoff=0.05)
    watcher.start()
    eventually(lambda: recorder.calls["id2"] == 1)
    assert recorder.calls["id1"] == 1 and len(connects) == 3
    assert "ValueError: Expecting value" in caplog.text
    assert "RuntimeError: a bug in the adapter" in caplog.text
    watcher.stop()
    queue.close()
