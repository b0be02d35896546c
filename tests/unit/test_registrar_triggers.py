"""The background triggers: the event stream enqueues keys and reconnects; the periodic
pass runs at start, again after a failure, and on its interval."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

from swarm_oauth.registrar.model import Key
from swarm_oauth.registrar.ports import TransientError
from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.triggers import EventWatcher, Resync


def eventually(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


class Recorder:
    """Stands for the controller: records what the triggers ask of it."""

    def __init__(self, failing_passes: int = 0) -> None:
        self.keys: Counter[Key] = Counter()
        self.passes = 0
        self.failing_passes = failing_passes
        self.lock = threading.Lock()

    def enqueue(self, keys: Any) -> None:
        with self.lock:
            self.keys.update(keys)

    def full_pass(self) -> Future[Counter[Outcome]]:
        future: Future[Counter[Outcome]] = Future()
        with self.lock:
            self.passes += 1
            failed = self.passes <= self.failing_passes
        if failed:
            future.set_exception(TransientError("docker down"))
        else:
            future.set_result(Counter())
        return future


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


def test_the_event_watcher_enqueues_service_keys_reconnects_and_asks_for_a_pass_after_a_gap():
    recorder = Recorder()
    streams = [
        Stream([("create", "id1", "a"), ("update", "id1", "a")], fail=True),
        Stream([("remove", "id2", "b")]),
    ]
    connects: list[int] = []

    def connect() -> Stream:
        connects.append(1)
        if len(connects) == 2:
            raise TransientError("engine restarting")
        return streams.pop(0)

    watcher = EventWatcher(connect, recorder, max_backoff=0.05)  # type: ignore[arg-type]
    watcher.start()
    eventually(lambda: recorder.keys[Key.service("id2")] == 1)
    assert recorder.keys[Key.service("id1")] == 2
    assert len(connects) == 3 and recorder.passes == 1  # one pass, after the gap
    watcher.stop()


class GarbledStream(Stream):
    """A stream whose next event cannot be decoded."""

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        yield from self.events
        raise ValueError("Expecting value: line 1 column 1 (char 0)")


def test_the_event_watcher_survives_unexpected_errors(caplog):
    recorder = Recorder()
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

    watcher = EventWatcher(connect, recorder, max_backoff=0.05)  # type: ignore[arg-type]
    watcher.start()
    eventually(lambda: recorder.keys[Key.service("id2")] == 1)
    assert recorder.keys[Key.service("id1")] == 1 and len(connects) == 3
    assert "ValueError: Expecting value" in caplog.text
    assert "RuntimeError: a bug in the adapter" in caplog.text
    watcher.stop()


def test_resync_runs_at_start_retries_a_failed_pass_soon_and_then_waits_its_interval():
    recorder = Recorder(failing_passes=1)
    resync = Resync(recorder, interval=3600, retry_delay=0.01)  # type: ignore[arg-type]
    resync.start()
    eventually(lambda: recorder.passes == 2)  # the first failed, retried soon after
    time.sleep(0.2)
    assert recorder.passes == 2  # then the interval, an hour
    resync.stop()


def test_resync_repeats_on_its_interval():
    recorder = Recorder()
    resync = Resync(recorder, interval=0.05)  # type: ignore[arg-type]
    resync.start()
    eventually(lambda: recorder.passes >= 3)
    resync.stop()
