"""The token path's client cache, and the client service whose writes it follows, on a real
SQLite store."""

import threading

import pytest

from swarm_oauth.clients import ClientService
from swarm_oauth.clients.cache import ENTRY_OVERHEAD_BYTES, ClientCache, record_size
from swarm_oauth.clients.service import public_record
from swarm_oauth.store.sqlite import SQLiteStore


@pytest.fixture
def store(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite")
    store.migrate()
    yield store
    store.close()


def test_cached_until_the_change_log_names_it(store):
    cache = ClientCache(store)
    service = ClientService(store)
    cursor = store.last_change()
    service.add("a")
    assert cache.peek("a") == (False, None)
    assert cache.load("a").client_id == "a"
    assert cache.peek("a")[1].client_id == "a"
    service.remove("a")
    assert cache.peek("a")[1].client_id == "a"  # stale until the change is applied
    batch = store.changes_since(cursor)
    cache.apply(batch)
    assert cache.peek("a") == (False, None)
    assert cache.load("a") is None
    assert cache.peek("a") == (True, None)  # unknown ids are remembered too


def test_a_load_that_races_an_invalidation_is_not_cached(store):
    service = ClientService(store)
    service.add("a")
    cursor = store.last_change()
    cache = ClientCache(store)
    in_get = threading.Event()
    release = threading.Event()
    real_get = store.get_client

    def slow_get(client_id):
        record = real_get(client_id)
        in_get.set()
        release.wait(5)
        return record

    store.get_client = slow_get
    loader = threading.Thread(target=cache.load, args=("a",))
    loader.start()
    in_get.wait(5)
    service.remove("a")
    cache.apply(store.changes_since(cursor))
    release.set()
    loader.join()
    assert cache.peek("a") == (False, None)


def test_incomplete_batch_clears_everything(store):
    from swarm_oauth.store import ChangeBatch

    ClientService(store).add("a")
    cache = ClientCache(store)
    cache.load("a")
    cache.apply(ChangeBatch(cursor=0, changes=(), complete=False))
    assert cache.peek("a") == (False, None)


def test_unknown_ids_are_bounded_by_entries_and_the_oldest_go_first(store):
    cache = ClientCache(store, max_unknown_entries=3)
    for n in range(10):
        assert cache.load(f"nobody-{n}") is None
    assert cache.usage()["unknown_entries"] == 3
    assert [cache.peek(f"nobody-{n}")[0] for n in range(10)] == [False] * 7 + [True] * 3


def test_unknown_ids_are_bounded_by_bytes(store):
    budget = 4 * (ENTRY_OVERHEAD_BYTES + 128)
    cache = ClientCache(store, max_unknown_bytes=budget)
    for n in range(50):
        cache.load(f"{n:03d}" + "x" * 125)
    usage = cache.usage()
    assert usage["unknown_entries"] == 4
    assert usage["unknown_bytes"] <= budget


def test_a_flood_of_unknown_ids_never_evicts_a_known_client(store):
    ClientService(store).add("orders")
    cache = ClientCache(store, max_entries=10, max_unknown_entries=5)
    cache.load("orders")
    for n in range(1000):
        cache.load(f"attacker-{n}")
    assert cache.peek("orders")[1].client_id == "orders"
    assert cache.usage()["unknown_entries"] == 5


def test_known_clients_are_bounded_by_bytes(store):
    service = ClientService(store)
    metadata = {"note": "m" * 3000}
    for n in range(6):
        service.add(f"big-{n}", metadata=metadata)
    one = record_size("big-0", store.get_client("big-0"))
    cache = ClientCache(store, max_bytes=3 * one)
    for n in range(6):
        assert cache.load(f"big-{n}").client_id == f"big-{n}"
    usage = cache.usage()
    assert usage["known_entries"] == 3
    assert usage["known_bytes"] <= 3 * one
    assert cache.peek("big-5")[0] and not cache.peek("big-0")[0]


def test_an_added_client_replaces_its_unknown_entry(store):
    cursor = store.last_change()
    cache = ClientCache(store)
    assert cache.load("late") is None
    ClientService(store).add("late")
    cache.apply(store.changes_since(cursor))
    assert cache.load("late").client_id == "late"
    assert cache.usage()["unknown_entries"] == 0


def test_reads_do_not_wait_for_a_blocked_writer(store, tmp_path):
    """WAL readers never wait: a write stuck behind another process's lock must not hold
    up the token path's reads or the change watcher."""
    import sqlite3

    ClientService(store).add("a")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    writer = threading.Thread(target=lambda: ClientService(store).add("b"))
    writer.start()
    try:
        assert store.get_client("a").client_id == "a"
        assert store.changes_since(0).changes
        assert writer.is_alive()  # still waiting for the lock while we read
    finally:
        other.execute("ROLLBACK")
        writer.join(15)
    assert store.get_client("b") is not None


def test_a_grace_ends_at_the_whole_second_the_api_publishes(store):
    """The API says when an old secret stops working in whole seconds; a registrar that
    reads it and then finds the old secret still working would call a working secret
    spent. So the grace ends at that very second: rounded up, never cut short."""
    now = 1_800_000_000.25
    service = ClientService(store, clock=lambda: now)
    service.add("a")
    rotated = service.rotate("a", 8)
    assert rotated.record.previous_secret_expires_at == 1_800_000_009.0
    published = public_record(rotated.record)["previous_secret_expires_at"]
    assert published == "2027-01-15T08:00:09Z"
    assert store.get_client("a").previous_secret_expires_at == 1_800_000_009.0
