"""PostgreSQL under real concurrency: many connections and processes at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from swarm_oauth.store import ClientExists, ClientRecord, KeyRecord
from swarm_oauth.store.postgres import PostgresStore
from tests.support.race import race

pytestmark = pytest.mark.postgres


@pytest.fixture
def migrated_url(postgres_url: str) -> Iterator[str]:
    store = PostgresStore(postgres_url)
    store.migrate()
    store.close()
    yield postgres_url


def client(client_id: str) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        secret_hash=f"hash-{client_id}",
        scopes=(),
        audiences=(),
        metadata={},
        created_at=1.0,
        updated_at=1.0,
    )


def test_fifty_simultaneous_adds_of_one_id_make_one_client(migrated_url: str) -> None:
    count = 50
    # One store (own pool, own connection) per caller: 50 real concurrent sessions.
    stores = [PostgresStore(migrated_url, max_connections=1) for _ in range(count)]
    try:
        for store in stores:
            store.ping()
        barrier = threading.Barrier(count)

        def add(n: int) -> str:
            record = replace(client("svc-same"), secret_hash=f"h{n}")
            barrier.wait(30)
            try:
                stores[n].add_client(record)
            except ClientExists:
                return "exists"
            return "created"

        with ThreadPoolExecutor(count) as pool:
            outcomes = list(pool.map(add, range(count)))
    finally:
        for store in stores:
            store.close()

    assert sorted(outcomes) == ["created"] + ["exists"] * 49
    check = PostgresStore(migrated_url)
    try:
        assert [c.client_id for c in check.list_clients()] == ["svc-same"]
        assert [c.key for c in check.changes_since(0).changes] == ["svc-same"]
    finally:
        check.close()


def _first_start(url: str, kid: str, barrier: Any, results: Any) -> None:
    try:
        store = PostgresStore(url)
        store.ping()
        now = time.time()
        record = KeyRecord(
            kid=kid,
            alg="ES256",
            private_key_encrypted=b"sealed",
            certificate_pem="pem",
            created_at=now,
            activates_at=now,
        )
        barrier.wait(60)
        created = store.add_key(record, only_if_no_active=True)
        store.close()
        results.put((kid, created))
    except BaseException as exc:
        results.put((kid, f"{type(exc).__name__}: {exc}"))


def test_several_processes_starting_at_once_create_exactly_one_key(migrated_url: str) -> None:
    count = 6
    outcomes = dict(race(_first_start, [(migrated_url, f"kid-{n}") for n in range(count)]))

    assert sorted(outcomes.values(), key=str) == [False] * (count - 1) + [True]
    winner = next(kid for kid, created in outcomes.items() if created is True)
    store = PostgresStore(migrated_url)
    try:
        assert [k.kid for k in store.list_keys()] == [winner]
    finally:
        store.close()


def test_a_polling_reader_never_misses_a_concurrent_commit(migrated_url: str) -> None:
    writers, per_writer = 8, 25
    expected = {f"w{w}-{n}" for w in range(writers) for n in range(per_writer)}
    reader = PostgresStore(migrated_url)
    seen: list[str] = []
    seqs: list[int] = []
    done = threading.Event()

    def poll() -> None:
        cursor = 0
        while True:
            finished = done.is_set()
            batch = reader.changes_since(cursor)
            assert batch.complete
            seen.extend(c.key for c in batch.changes)
            seqs.extend(c.seq for c in batch.changes)
            cursor = batch.cursor
            if finished:
                return

    def write(w: int) -> None:
        store = PostgresStore(migrated_url, max_connections=1)
        try:
            for n in range(per_writer):
                store.add_client(client(f"w{w}-{n}"))
        finally:
            store.close()

    with ThreadPoolExecutor(writers + 1) as pool:
        polling = pool.submit(poll)
        list(pool.map(write, range(writers)))
        done.set()
        polling.result()
    reader.close()

    assert seqs == sorted(set(seqs))
    assert sorted(seen) == sorted(expected)
