"""The PostgreSQL store when its server goes away and comes back."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from swarm_oauth.store import ClientRecord, StoreUnavailable
from swarm_oauth.store.postgres import WRITE_LOCK, PostgresStore
from tests.support.postgres import PostgresCluster, create_database
from tests.support.server import free_port

pytestmark = pytest.mark.postgres


def client(client_id: str) -> ClientRecord:
    return ClientRecord(
        client_id=client_id,
        secret_hash="h",
        scopes=(),
        audiences=(),
        metadata={},
        created_at=1.0,
        updated_at=1.0,
    )


@pytest.fixture
def cluster(postgres_cluster_factory: Callable[[], PostgresCluster]) -> PostgresCluster:
    return postgres_cluster_factory()


@pytest.fixture
def database_url(cluster: PostgresCluster) -> str:
    return create_database(cluster.url)


@pytest.fixture
def store(database_url: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(database_url)
    opened.migrate()
    yield opened
    opened.close()


def test_nothing_listening_raises_store_unavailable() -> None:
    store = PostgresStore(f"postgresql://nobody@127.0.0.1:{free_port()}/none")
    try:
        with pytest.raises(StoreUnavailable):
            store.migrate()
        with pytest.raises(StoreUnavailable):
            store.get_client("svc-a")
        assert store.wait_for_change(0.1) is False
    finally:
        store.close()


def test_store_unavailable_says_why_the_connect_failed(cluster: PostgresCluster) -> None:
    base = psycopg.conninfo.conninfo_to_dict(cluster.url)
    cases = {
        "nosuch_db": f"postgresql://{base['user']}@127.0.0.1:{base['port']}/nosuch_db",
        "nosuch_role": f"postgresql://nosuch_role:pw-not-shown@127.0.0.1:{base['port']}/postgres",
        "Connection refused": f"postgresql://{base['user']}@127.0.0.1:{free_port()}/postgres",
    }
    for reason, url in cases.items():
        store = PostgresStore(url, acquire_timeout=0.5)
        try:
            with pytest.raises(StoreUnavailable) as raised:
                store.migrate()
            message = str(raised.value)
            assert message.startswith("postgresql: no connection within 0.5 s: "), message
            assert reason in message
            assert "pw-not-shown" not in message
        finally:
            store.close()


def test_server_stopped_then_restarted(cluster: PostgresCluster, store: PostgresStore) -> None:
    store.add_client(client("before"))
    # Hold a LISTEN connection too, so the restart has one more connection to break.
    assert store.wait_for_change(0.05) is False

    cluster.stop()
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.get_client("before")
    with pytest.raises(StoreUnavailable):
        store.add_client(client("during"))
    with pytest.raises(StoreUnavailable):
        store.changes_since(0)
    assert isinstance(store.wait_for_change(0.1), bool)

    cluster.start()
    # The same store object, no reopening: its pooled connections died with the server.
    store.add_client(client("after"))
    assert [c.client_id for c in store.list_clients()] == ["after", "before"]
    assert [c.key for c in store.changes_since(0).changes] == ["before", "after"]


def test_stale_pooled_connections_are_replaced_transparently(
    cluster: PostgresCluster, store: PostgresStore
) -> None:
    store.ping()  # the pool now holds a live connection
    cluster.stop()
    cluster.start()
    # Nothing was asked while the server was down: the first use finds a dead connection.
    store.add_client(client("first-write-after-restart"))
    assert store.get_client("first-write-after-restart") == client("first-write-after-restart")


def test_a_listener_reconnects_after_a_restart(
    cluster: PostgresCluster, database_url: str, store: PostgresStore
) -> None:
    other = PostgresStore(database_url)
    try:
        assert store.wait_for_change(0.05) is False
        cluster.stop()
        cluster.start()
        # The broken LISTEN connection wakes the waiter once (changes may have been
        # missed), then is replaced; a quiet wait that times out means it listens again.
        woken = [store.wait_for_change(0.2) for _ in range(3)]
        assert woken[0] is True
        assert woken[-1] is False
        other.add_client(client("svc-a"))
        assert store.wait_for_change(30) is True
    finally:
        other.close()


def test_a_write_stuck_behind_the_write_lock_gives_up_instead_of_hanging(
    database_url: str, store: PostgresStore
) -> None:
    impatient = PostgresStore(database_url, statement_timeout=0.5)
    try:
        # Another session holds the write lock, as a writer stuck mid-transaction would.
        with psycopg.connect(database_url) as holder:
            holder.execute("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            with pytest.raises(StoreUnavailable):
                impatient.add_client(client("svc-a"))
            # Reads never wait for the write lock.
            assert impatient.get_client("svc-a") is None
        impatient.add_client(client("svc-a"))
        assert store.get_client("svc-a") == client("svc-a")
    finally:
        impatient.close()


def test_a_database_restored_from_an_older_dump_makes_readers_reload(
    cluster: PostgresCluster, database_url: str, store: PostgresStore, tmp_path: Path
) -> None:
    # A reader (a tokens process's watcher) follows the log to its head; the database
    # is then restored from a dump taken earlier: the log restarts below the reader's
    # cursor, and its numbers come again for other changes.
    reader = PostgresStore(database_url)
    try:
        store.add_client(client("svc-a"))
        dump = tmp_path / "oauth.dump"
        subprocess.run(
            [str(cluster.bin_dir / "pg_dump"), "-Fc", "-f", str(dump), database_url], check=True
        )
        for name in ("svc-b", "svc-c", "svc-d"):
            store.add_client(client(name))
        store.remove_client("svc-a")
        followed = reader.changes_since(0)
        assert followed.complete and followed.cursor == store.last_change() == 5

        name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
        with psycopg.connect(cluster.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        subprocess.run(
            [str(cluster.bin_dir / "pg_restore"), "-d", database_url, str(dump)], check=True
        )
        assert store.get_client("svc-a") is not None  # back, as in the dump
        # Writes after the restore carry the log past the reader's cursor again.
        for name in ("svc-e", "svc-f", "svc-g", "svc-h", "svc-i"):
            store.add_client(client(name))
        assert store.last_change() == 6
        batch = reader.changes_since(followed.cursor)
        assert batch.complete is False  # drop everything cached, it may be gone
        assert batch.cursor == 6
        assert reader.changes_since(batch.cursor).complete is True
        store.remove_client("svc-e")
        after = reader.changes_since(batch.cursor)
        assert after.complete and [c.key for c in after.changes] == ["svc-e"]
    finally:
        reader.close()


def test_a_log_behind_the_cursor_is_an_incomplete_batch(store: PostgresStore) -> None:
    # A failover to a standby that had not yet received the last changes.
    store.add_client(client("svc-a"))
    head = store.last_change()
    batch = store.changes_since(head + 3)
    assert (batch.complete, batch.cursor) == (False, head)
