"""The token path's client cache on a real SQLite store."""

import threading

import pytest

from swarm_oauth.clients import ClientService
from swarm_oauth.clients.cache import MISSING, ClientCache
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
    assert cache.cached("a") is MISSING
    assert cache.load("a").client_id == "a"
    assert cache.cached("a").client_id == "a"
    service.remove("a")
    assert cache.cached("a").client_id == "a"  # stale until the change is applied
    batch = store.changes_since(cursor)
    cache.apply(batch)
    assert cache.cached("a") is MISSING
    assert cache.load("a") is None
    assert cache.cached("a") is None  # unknown ids are remembered too


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
    assert cache.cached("a") is MISSING


def test_incomplete_batch_clears_everything(store):
    from swarm_oauth.store import ChangeBatch

    ClientService(store).add("a")
    cache = ClientCache(store)
    cache.load("a")
    cache.apply(ChangeBatch(cursor=0, changes=(), complete=False))
    assert cache.cached("a") is MISSING


def test_bounded_size(store):
    cache = ClientCache(store, max_entries=3)
    for name in ("a", "b", "c", "d"):
        cache.load(name)
    assert sum(cache.cached(n) is not MISSING for n in "abcd") <= 3
