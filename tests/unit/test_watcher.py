"""The change watcher on a real SQLite store: it survives failures and reports staleness."""

import asyncio

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


def test_a_failing_apply_does_not_end_the_watcher(store):
    seen = []

    def apply(batch):
        if not seen:
            seen.append("boom")
            raise RuntimeError("a bug while applying")
        seen.extend(change.key for change in batch.changes)

    watcher = ChangeWatcher(store, apply, interval=0.05)
    ClientService(store).add("a")

    async def run_for_a_while():
        task = asyncio.create_task(watcher.run())
        for _ in range(100):
            await asyncio.sleep(0.05)
            if "b" in seen:
                break
            if seen == ["boom"] or "a" in seen:
                ClientService(store).add("b")
        task.cancel()

    asyncio.run(run_for_a_while())
    watcher.close()
    assert seen[0] == "boom" and "b" in seen
    assert watcher.fresh()


def test_stale_when_the_store_stops_answering(store):
    watcher = ChangeWatcher(store, lambda batch: None, interval=0.05, stale_after=0.2)
    store.close()  # every poll now fails

    async def run_for_a_while():
        task = asyncio.create_task(watcher.run())
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(run_for_a_while())
    watcher.close()
    assert not watcher.fresh()
