"""One store suite, run against a real SQLite file and a real PostgreSQL database."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as psql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from swarm_oauth.store import (
    ClientExists,
    ClientRecord,
    KeyRecord,
    RevocationRecord,
    Store,
    StoreError,
    StoreUnavailable,
    open_store,
)
from swarm_oauth.store import postgres as postgres_store
from swarm_oauth.store import sqlite as sqlite_store
from swarm_oauth.store.postgres import PostgresStore
from swarm_oauth.store.records import CLIENT_COLUMNS, client_params
from swarm_oauth.store.sqlite import SQLiteStore
from tests.support.postgres import url_for
from tests.support.race import race

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

StoreFactory = Callable[..., Store]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store (no schema yet) of the backend under test."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def make_store(backend: str, store_url: str, tmp_path: Path) -> Iterator[StoreFactory]:
    """Open (and migrate) more stores on the same database, with backend options."""
    opened: list[Store] = []

    def make(**options: Any) -> Store:
        if backend == "sqlite":
            store: Store = SQLiteStore(store_url.removeprefix("sqlite:///"), **options)
        else:
            store = PostgresStore(store_url, **options)
        opened.append(store)
        store.migrate()
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(store_url: str, tmp_path: Path) -> Iterator[Store]:
    """A migrated store opened the way the server opens it: by URL."""
    opened = open_store(store_url, tmp_path)
    opened.migrate()
    yield opened
    opened.close()


def client(client_id: str = "svc-a", **fields: Any) -> ClientRecord:
    values: dict[str, Any] = {
        "client_id": client_id,
        "secret_hash": f"hash-of-{client_id}",
        "scopes": ("read", "write"),
        "audiences": ("api",),
        "metadata": {"service": client_id, "nested": {"n": 1}},
        "created_at": 1_700_000_000.25,
        "updated_at": 1_700_000_000.25,
        **fields,
    }
    return ClientRecord(**values)


def key(kid: str, *, created_at: float, activates_at: float | None = None) -> KeyRecord:
    return KeyRecord(
        kid=kid,
        alg="ES256",
        private_key_encrypted=b"\x00encrypted\xff" + kid.encode(),
        certificate_pem=f"-----BEGIN CERTIFICATE-----\n{kid}\n-----END CERTIFICATE-----\n",
        created_at=created_at,
        activates_at=created_at if activates_at is None else activates_at,
    )


# -- clients ------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database_or_a_malformed_url_is_a_store_error(
    tmp_path: Path,
) -> None:
    # An operator's mistake, to be told in one line rather than a traceback.
    (tmp_path / "swarm-oauth.db").write_bytes(b"garbage, not SQLite")
    with pytest.raises(StoreError, match=r"swarm-oauth\.db: file is not a database"):
        open_store(None, tmp_path)
    with pytest.raises(StoreError, match="the database URL is malformed") as raised:
        open_store("postgresql://u:s3cr3t@[bad/db", tmp_path)
    assert "s3cr3t" not in str(raised.value)


def test_add_get_list_remove(store: Store) -> None:
    b, a = client("svc-b"), client("svc-a", scopes=(), audiences=(), metadata={})
    store.add_client(b)
    store.add_client(a)

    assert store.get_client("svc-b") == b
    assert store.get_client("svc-a") == a
    assert store.get_client("svc-c") is None
    assert store.list_clients() == [a, b]

    assert store.remove_client("svc-a") is True
    assert store.get_client("svc-a") is None
    assert store.remove_client("svc-a") is False
    assert store.list_clients() == [b]


def test_clients_in_pages_and_counted(store: Store) -> None:
    ids = [f"svc-{n:02d}" for n in range(7)]
    for client_id in reversed(ids):
        store.add_client(client(client_id))
    assert store.count_clients() == 7
    pages, after = [], None
    while page := store.list_clients(limit=3, after=after):
        pages.append([c.client_id for c in page])
        after = page[-1].client_id
    assert pages == [ids[0:3], ids[3:6], ids[6:7]]
    assert [c.client_id for c in store.list_clients(after="svc-03")] == ids[4:]
    store.remove_client("svc-00")
    assert store.count_clients() == 6


def test_only_a_migrated_store_counts_as_initialized(store_url: str, tmp_path: Path) -> None:
    fresh = open_store(store_url, tmp_path)
    try:
        assert fresh.initialized() is False
        fresh.migrate()
        assert fresh.initialized() is True
    finally:
        fresh.close()


def test_a_client_is_removed_with_its_cutoff_in_one_change(store: Store) -> None:
    now = time.time()
    store.add_client(client("svc-a"))
    cursor = store.last_change()
    cutoff = RevocationRecord("svc-a", now + 1000, issued_before=now)
    assert store.remove_client("svc-a", cutoff) is True
    assert store.get_client("svc-a") is None
    assert store.list_revocations(now) == [cutoff]
    # One batch names both: no reader of the log sees the cut-off without the removal.
    batch = store.changes_since(cursor)
    assert [(c.kind, c.key) for c in batch.changes] == [
        ("client", "svc-a"),
        ("revocation", cutoff.key),
    ]
    # Nothing to remove, nothing revoked.
    other = RevocationRecord("svc-b", now + 1000, issued_before=now)
    assert store.remove_client("svc-b", other) is False
    assert store.list_revocations(now) == [cutoff]


def test_duplicate_add_raises_client_exists_and_keeps_the_first(store: Store) -> None:
    first = client("svc-a")
    store.add_client(first)
    with pytest.raises(ClientExists):
        store.add_client(client("svc-a", secret_hash="another-hash"))
    assert store.get_client("svc-a") == first


def test_rotate_with_grace_keeps_the_previous_hash(store: Store) -> None:
    store.add_client(client("svc-a", secret_hash="old"))

    rotated = store.rotate_client_secret("svc-a", "new", 1_800_000_060.0, 1_800_000_000.0)
    assert rotated is not None
    assert (rotated.secret_hash, rotated.previous_secret_hash) == ("new", "old")
    assert rotated.previous_secret_expires_at == 1_800_000_060.0
    assert rotated.secret_version == 2
    assert rotated.updated_at == 1_800_000_000.0
    assert rotated.created_at == client().created_at
    assert store.get_client("svc-a") == rotated

    again = store.rotate_client_secret("svc-a", "newer", None, 1_800_000_100.0)
    assert again is not None
    assert (again.secret_hash, again.previous_secret_hash) == ("newer", None)
    assert again.previous_secret_expires_at is None
    assert again.secret_version == 3
    assert store.get_client("svc-a") == again


def test_update_replaces_given_fields_and_keeps_the_secret(store: Store) -> None:
    store.add_client(client("svc-a", secret_hash="h"))
    cursor = store.last_change()
    updated = store.update_client("svc-a", scopes=("admin",), audiences=(), now=1_800_000_000.0)
    assert updated is not None
    assert (updated.scopes, updated.audiences) == (("admin",), ())
    assert updated.metadata == client().metadata  # not given: kept
    assert (updated.secret_hash, updated.secret_version) == ("h", 1)
    assert updated.updated_at == 1_800_000_000.0
    assert store.get_client("svc-a") == updated
    assert [c.key for c in store.changes_since(cursor).changes] == ["svc-a"]
    assert store.update_client("ghost", scopes=(), now=1.0) is None


def test_rotate_unknown_client_is_none_and_logs_nothing(store: Store) -> None:
    before = store.last_change()
    assert store.rotate_client_secret("nobody", "h", None, 1.0) is None
    assert store.get_client("nobody") is None
    assert store.last_change() == before


# -- keys ---------------------------------------------------------------------------------


def test_keys_add_only_if_no_active_and_retire(store: Store) -> None:
    now = time.time()
    first = key("k1", created_at=now - 100)
    assert store.add_key(first, only_if_no_active=True) is True
    assert store.add_key(key("k2", created_at=now), only_if_no_active=True) is False
    assert store.list_keys() == [first]

    # k1 stops signing in the past: no key signs now, so a first-start key may be created.
    store.schedule_key_retirement("k1", now - 10, now + 3600)
    replacement = key("k3", created_at=now)
    assert store.add_key(replacement, only_if_no_active=True) is True
    retired = store.list_keys()[0]
    assert (retired.kid, retired.retires_at, retired.unpublish_at) == ("k1", now - 10, now + 3600)
    assert [k.kid for k in store.list_keys()] == ["k1", "k3"]
    assert store.list_keys()[1] == replacement


def test_rotate_keys_adds_and_retires_in_one_step(store: Store) -> None:
    now = time.time()
    store.add_key(key("k1", created_at=now - 100))
    store.add_key(key("gone", created_at=now - 200))
    store.schedule_key_retirement("gone", now - 50, now + 10)
    cursor = store.last_change()
    new = key("k2", created_at=now, activates_at=now + 60)
    assert store.rotate_keys(new, now + 1000) == ["k1"]
    by_kid = {k.kid: k for k in store.list_keys()}
    assert (by_kid["k1"].retires_at, by_kid["k1"].unpublish_at) == (now + 60, now + 1000)
    assert (by_kid["gone"].retires_at, by_kid["gone"].unpublish_at) == (now - 50, now + 10)
    assert by_kid["k2"] == new
    assert [c.key for c in store.changes_since(cursor).changes] == ["k2", "k1"]


def test_rotate_keys_only_when_no_key_began_signing_since(store: Store) -> None:
    now = time.time()
    store.add_key(key("k1", created_at=now - 100))
    # A key withdrawn by hand does not count, however recent.
    store.add_key(key("withdrawn", created_at=now - 20))
    store.schedule_key_retirement("withdrawn", now - 10, now - 10)
    cursor = store.last_change()

    early = key("early", created_at=now, activates_at=now + 5)
    assert store.rotate_keys(early, now + 900, unless_activated_after=now - 200) is None
    assert [k.kid for k in store.list_keys()] == ["k1"]
    assert not store.changes_since(cursor).changes  # nothing written, nothing announced

    due = key("due", created_at=now, activates_at=now + 5)
    assert store.rotate_keys(due, now + 900, unless_activated_after=now - 50) == ["k1"]
    # The key just published counts, although it signs only later: no second rotation.
    again = key("again", created_at=now + 1, activates_at=now + 6)
    assert store.rotate_keys(again, now + 900, unless_activated_after=now - 50) is None
    assert [k.kid for k in store.list_keys()] == ["k1", "due"]


def _rotate_in_process(url: str, data_dir: str, kid: str, barrier: Any, results: Any) -> None:
    try:
        store = open_store(url, Path(data_dir))
        store.ping()
        now = time.time()
        record = key(kid, created_at=now, activates_at=now + 5)
        barrier.wait(60)
        retired = store.rotate_keys(record, now + 900, unless_activated_after=now - 60)
        store.close()
        results.put((kid, retired))
    except BaseException as exc:
        results.put((kid, f"{type(exc).__name__}: {exc}"))


def test_processes_racing_for_one_due_rotation_make_exactly_one(
    store: Store, store_url: str, tmp_path: Path
) -> None:
    store.add_key(key("old", created_at=time.time() - 3600))
    count = 6
    outcomes = dict(
        race(_rotate_in_process, [(store_url, str(tmp_path), f"k{n}") for n in range(count)])
    )

    winners = [kid for kid, retired in outcomes.items() if retired == ["old"]]
    assert len(winners) == 1, outcomes
    assert sorted(outcomes.values(), key=str) == [None] * (count - 1) + [["old"]]
    assert [k.kid for k in store.list_keys()] == ["old", winners[0]]


def test_a_key_due_to_sign_later_counts_as_active(store: Store) -> None:
    now = time.time()
    assert store.add_key(key("future", created_at=now, activates_at=now + 600)) is True
    assert store.add_key(key("k2", created_at=now), only_if_no_active=True) is False


def test_list_keys_hides_unpublished_keys(store: Store) -> None:
    now = time.time()
    store.add_key(key("gone", created_at=now - 1000))
    store.add_key(key("kept", created_at=now - 500))
    store.schedule_key_retirement("gone", now - 900, now - 1)
    store.schedule_key_retirement("kept", now - 400, now + 1000)
    assert [k.kid for k in store.list_keys()] == ["kept"]


# -- revocations --------------------------------------------------------------------------


def test_revocations_merge_by_key_and_are_logged(store: Store) -> None:
    now = time.time()
    cursor = store.last_change()
    token = RevocationRecord("svc-a", now + 100, jti="jti-1")
    store.add_revocation(token, now)
    store.add_revocation(token, now)
    store.add_revocation(RevocationRecord("svc-a", now + 1000, issued_before=now - 10), now)
    # A later cut-off with a shorter life, then an earlier one: the latest of each wins.
    store.add_revocation(RevocationRecord("svc-a", now + 500, issued_before=now), now)
    store.add_revocation(RevocationRecord("svc-a", now + 10, issued_before=now - 100), now)

    cutoff = RevocationRecord("svc-a", now + 1000, issued_before=now)
    assert sorted(store.list_revocations(now), key=lambda r: r.key) == [cutoff, token]
    changes = store.changes_since(cursor).changes
    assert [(c.kind, c.key) for c in changes] == [("revocation", "jti:jti-1")] * 2 + [
        ("revocation", "client:svc-a")
    ] * 3


def test_revocations_are_kept_only_until_they_expire(store: Store) -> None:
    now = time.time()
    store.add_revocation(RevocationRecord("svc-a", now + 100, jti="short"), now)
    store.add_revocation(RevocationRecord("svc-a", now + 1000, issued_before=now), now)
    assert [r.key for r in store.list_revocations(now + 200)] == ["client:svc-a"]
    # The next revocation deletes what expired (everything still stored is listed at 0).
    store.add_revocation(RevocationRecord("svc-b", now + 5000, jti="long"), now + 200)
    assert sorted(r.key for r in store.list_revocations(0)) == ["client:svc-a", "jti:long"]


# -- change log ---------------------------------------------------------------------------


def test_change_log_names_every_mutation_in_order(store: Store) -> None:
    cursor = store.last_change()
    store.add_client(client("svc-a"))
    with pytest.raises(ClientExists):
        store.add_client(client("svc-a"))
    store.rotate_client_secret("svc-a", "h2", None, 2.0)
    assert store.remove_client("svc-a") is True
    assert store.remove_client("svc-a") is False
    store.add_key(key("k1", created_at=1.0))
    store.schedule_key_retirement("k1", 2.0, 3.0)

    batch = store.changes_since(cursor)
    assert batch.complete
    assert [(c.kind, c.key) for c in batch.changes] == [
        ("client", "svc-a"),
        ("client", "svc-a"),
        ("client", "svc-a"),
        ("key", "k1"),
        ("key", "k1"),
    ]
    seqs = [c.seq for c in batch.changes]
    assert seqs == sorted(set(seqs))
    assert batch.cursor == seqs[-1] == store.last_change()

    empty = store.changes_since(batch.cursor)
    assert (empty.cursor, list(empty.changes), empty.complete) == (batch.cursor, [], True)


def test_change_log_seen_by_another_connection(make_store: StoreFactory) -> None:
    writer, reader = make_store(), make_store()
    cursor = reader.last_change()
    writer.add_client(client("svc-a"))
    batch = reader.changes_since(cursor)
    assert [(c.kind, c.key) for c in batch.changes] == [("client", "svc-a")]


def test_change_log_reports_a_gap_after_pruning(make_store: StoreFactory) -> None:
    store = make_store(change_log_keep=10)
    start = store.last_change()
    for n in range(40):
        store.add_client(client(f"svc-{n}"))

    behind = store.changes_since(start)
    assert not behind.complete
    assert behind.cursor == store.last_change()

    recent_cursor = store.last_change() - 5
    recent = store.changes_since(recent_cursor)
    assert recent.complete
    assert [c.key for c in recent.changes] == [f"svc-{n}" for n in range(35, 40)]


def test_wait_for_change(backend: str, make_store: StoreFactory) -> None:
    waiter, writer = make_store(), make_store()
    # Nothing happened: both backends wait the time out.
    assert waiter.wait_for_change(0.2) is False
    writer.add_client(client("svc-a"))
    # PostgreSQL wakes on NOTIFY; SQLite has no signal and only sleeps.
    postgres = backend == "postgresql"
    assert waiter.wait_for_change(30 if postgres else 0.2) is postgres
    assert [c.key for c in waiter.changes_since(0).changes] == ["svc-a"]


# -- migrations ---------------------------------------------------------------------------


def test_migrate_twice_is_a_no_op(store: Store) -> None:
    store.add_client(client("svc-a"))
    head = store.last_change()
    store.migrate()
    assert store.get_client("svc-a") == client("svc-a")
    assert store.last_change() == head
    store.add_client(client("svc-b"))
    assert [c.client_id for c in store.list_clients()] == ["svc-a", "svc-b"]


def _migrate_in_process(url: str, data_dir: str, barrier: Any, results: Any) -> None:
    try:
        store = open_store(url, Path(data_dir))
        barrier.wait(30)
        store.migrate()
        store.close()
        results.put("ok")
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_concurrent_migrate_from_several_processes(store_url: str, tmp_path: Path) -> None:
    count = 5
    outcomes = race(_migrate_in_process, [(store_url, str(tmp_path))] * count)
    assert outcomes == ["ok"] * count

    store = open_store(store_url, tmp_path)
    try:
        store.add_client(client("svc-a"))
        assert store.list_clients() == [client("svc-a")]
        assert [c.key for c in store.changes_since(0).changes] == ["svc-a"]
    finally:
        store.close()


@pytest.mark.postgres
def test_writes_stay_serialized_where_the_database_defaults_to_a_stricter_isolation(
    postgres_url: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    # Under REPEATABLE READ the advisory lock's statement would take the snapshot before
    # its wait: each writer's checks would miss what the one before it committed.
    name = conninfo_to_dict(postgres_url)["dbname"]
    with psycopg.connect(postgres_admin_url, autocommit=True) as admin:
        admin.execute(
            psql.SQL(
                "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'"
            ).format(psql.Identifier(name))
        )
    count = 4
    assert race(_migrate_in_process, [(postgres_url, str(tmp_path))] * count) == ["ok"] * count
    store = open_store(postgres_url, tmp_path)
    try:
        store.add_key(key("old", created_at=time.time() - 3600))
        outcomes = dict(
            race(_rotate_in_process, [(postgres_url, str(tmp_path), f"k{n}") for n in range(count)])
        )
        assert sorted(outcomes.values(), key=str) == [None] * (count - 1) + [["old"]], outcomes
    finally:
        store.close()


@pytest.mark.postgres
def test_a_role_that_may_not_create_tables_starts_on_a_current_schema(
    postgres_url: str, postgres_admin_url: str, tmp_path: Path
) -> None:
    owner = open_store(postgres_url, tmp_path)
    owner.migrate()  # `swarm-oauth db upgrade`, as the owner
    owner.close()
    role, password = f"app_{secrets.token_hex(6)}", secrets.token_urlsafe(12)
    params = {key: str(value) for key, value in conninfo_to_dict(postgres_url).items()}
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(
            psql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psql.Identifier(role), psql.Literal(password)
            )
        )
        conn.execute(psql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        for grant in (
            "GRANT USAGE ON SCHEMA public TO {}",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}",
        ):
            conn.execute(psql.SQL(grant).format(psql.Identifier(role)))
    try:
        app_url = url_for(make_conninfo(**{**params, "user": role, "password": password}))
        store = open_store(app_url, tmp_path)
        try:
            store.migrate()  # what every `serve` start runs
            store.add_client(client("svc-a"))
            assert store.get_client("svc-a") == client("svc-a")
        finally:
            store.close()
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(psql.SQL("DROP OWNED BY {}").format(psql.Identifier(role)))
            conn.execute(psql.SQL("DROP ROLE {}").format(psql.Identifier(role)))


def test_registration_token_hash_is_kept_through_updates_and_rotations(store: Store) -> None:
    registered = client("dcr-a", registration_token_hash="sha256$rat")
    store.add_client(registered)
    assert store.get_client("dcr-a") == registered
    store.update_client("dcr-a", scopes=("read",), now=1_700_000_001.0)
    store.rotate_client_secret("dcr-a", "hash-2", None, 1_700_000_002.0)
    kept = store.get_client("dcr-a")
    assert kept is not None and kept.registration_token_hash == "sha256$rat"
    store.add_client(client("svc-b"))
    assert [c.registration_token_hash for c in store.list_clients()] == ["sha256$rat", None]


def test_the_registration_token_column_is_added_to_an_existing_database(
    backend: str, store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = sqlite_store if backend == "sqlite" else postgres_store
    migrations = module.MIGRATIONS
    adds_column = next(
        n for n, steps in enumerate(migrations) if "registration_token_hash" in " ".join(steps)
    )
    # The database as the program before that migration made and filled it.
    monkeypatch.setattr(module, "MIGRATIONS", migrations[:adds_column])
    previous = open_store(store_url, tmp_path)
    previous.migrate()
    old_columns = CLIENT_COLUMNS.replace(", registration_token_hash", "")
    marks = ", ".join([type(previous).placeholder] * len(old_columns.split(",")))
    existing = client("svc-old")
    previous._write(
        lambda conn: conn.execute(
            f"INSERT INTO clients ({old_columns}) VALUES ({marks})",  # noqa: S608
            client_params(existing)[:-1],
        )
    )
    previous.close()

    monkeypatch.setattr(module, "MIGRATIONS", migrations)
    current = open_store(store_url, tmp_path)
    try:
        current.migrate()
        assert current.get_client("svc-old") == existing  # no registration token
        current.add_client(client("dcr-new", registration_token_hash="sha256$rat"))
        registered = current.get_client("dcr-new")
        assert registered is not None and registered.registration_token_hash == "sha256$rat"
    finally:
        current.close()


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_sqlite_file_deleted_or_replaced_under_the_store_makes_it_unavailable(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "swarm-oauth.db"
    store = SQLiteStore(path)
    store.migrate()
    store.add_client(client("svc-a"))
    if how == "deleted":
        path.unlink()
    else:
        other = SQLiteStore(tmp_path / "other.db")
        other.migrate()
        other.close()
        (tmp_path / "other.db").replace(path)
    # Its open connections would go on reading and writing the old file, and the writes
    # would be gone at the next start.
    with pytest.raises(StoreUnavailable, match="no longer the file this process opened"):
        store.ping()
    with pytest.raises(StoreUnavailable, match="restore it, or restart"):
        store.add_client(client("svc-b"))
    store.close()
