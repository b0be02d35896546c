"""The change watcher on a real SQLite store: it survives failures and reports staleness."""

import time

import pytest

from swarm_oauth.clients import ClientService
from swarm_oauth.store.sqlite import SQLiteStore
from swarm_oauth.watcher import ChangeWatcher


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.migrate()
    yield store
    store.close()


def wait_until(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_a_failing_apply_does_not_end_the_watcher(store):
    seen = []

    def apply(batch):
        if not seen:
            seen.append("boom")
            raise RuntimeError("a bug while applying")
        seen.extend(change.key for change in batch.changes)

    watcher = ChangeWatcher(store, apply, interval=0.02)
    watcher.start()
    try:
        assert wait_until(lambda: seen == ["boom"])
        ClientService(store).add("b")
        assert wait_until(lambda: "b" in seen)
        assert watcher.fresh()
    finally:
        watcher.close()


def test_stale_when_the_store_stops_answering(store):
    watcher = ChangeWatcher(store, lambda batch: None, interval=0.02, stale_after=0.2)
    store.close()  # every poll now fails
    watcher.start()
    try:
        assert wait_until(lambda: not watcher.fresh())
    finally:
        watcher.close()
