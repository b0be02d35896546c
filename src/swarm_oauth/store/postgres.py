"""PostgreSQL store: one database shared by any number of server replicas.

Connections come from a small pool (psycopg_pool) in autocommit mode, so a read is a
single round trip with no BEGIN/COMMIT around it. Every write runs in a transaction that
first takes one transaction-level advisory lock; that serializes writers, which
- makes change-log sequence numbers visible in commit order (see ``store.sql``),
- makes ``add_key(only_if_no_active=True)`` a check-then-insert no other replica can
  interleave with.
Writes are administrative and rare, so serializing them costs nothing that matters; token
requests only read.

Faults: an unreachable server raises ``StoreUnavailable`` (never a bare psycopg error)
within ``acquire_timeout`` seconds, and within a fraction of a second once the pool has
failed to connect; the pool reconnects on the next use once the server is back, without
a restart.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Self

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from swarm_oauth.store.base import StoreError, StoreRejected, StoreUnavailable
from swarm_oauth.store.records import CHANGE_LOG_KEEP
from swarm_oauth.store.sql import Executor, SQLStore, T


def _lock_id(name: str) -> int:
    # Advisory locks share one 64-bit key space with every other application on the
    # server; a hash of a namespaced name keeps ours apart.
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


MIGRATION_LOCK = _lock_id("swarm-oauth:migrate")
WRITE_LOCK = _lock_id("swarm-oauth:write")
# NOTIFY channel that tells pollers the change log grew; the payload is the new seq.
CHANNEL = "swarm_oauth_changes"
# How long an operation waits for a connection once the server has been found
# unreachable: long enough for a fresh connection to a server that is back, short enough
# that /readyz and the admin API answer 503 at once during an outage.
UNREACHABLE_ACQUIRE_TIMEOUT = 0.25

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE clients (
            client_id TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL,
            scopes JSONB NOT NULL,
            audiences JSONB NOT NULL,
            metadata JSONB NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL,
            secret_version INTEGER NOT NULL,
            previous_secret_hash TEXT,
            previous_secret_expires_at DOUBLE PRECISION
        )""",
        """CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            alg TEXT NOT NULL,
            private_key_encrypted BYTEA NOT NULL,
            certificate_pem TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            activates_at DOUBLE PRECISION NOT NULL,
            retires_at DOUBLE PRECISION,
            unpublish_at DOUBLE PRECISION
        )""",
        """CREATE TABLE changes (
            seq BIGSERIAL PRIMARY KEY,
            kind TEXT NOT NULL,
            key TEXT NOT NULL
        )""",
        "CREATE TABLE changes_pruned (through_seq BIGINT NOT NULL)",
        "INSERT INTO changes_pruned (through_seq) VALUES (0)",
    ),
    (
        # key: "jti:<jti>" for one token, "client:<client_id>" for a client's cut-off.
        """CREATE TABLE revocations (
            key TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            jti TEXT,
            issued_before DOUBLE PRECISION,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX revocations_expires_at ON revocations (expires_at)",
    ),
    # RFC 7592: the SHA-256 of a dynamically registered client's registration access token.
    ("ALTER TABLE clients ADD COLUMN registration_token_hash TEXT",),
)


class _StaleConnection(Exception):
    """A pooled connection turned out dead before anything was committed on it."""


def _describe(exc: psycopg.Error, prefix: str = "postgresql: ") -> str:
    # The first line of libpq's message names host and port, never the password; the
    # statement's parameters are not part of it.
    first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return prefix + first_line


def _reporting_connection(
    report: Callable[[psycopg.Error | None], None],
) -> type[psycopg.Connection]:
    """A connection class for the pool that tells ``report`` how each connect went.

    The pool connects on its own threads and only logs why a connect failed, so an
    operation that then times out waiting for a connection could not say why.
    """

    class Reporting(psycopg.Connection):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
            try:
                conn = super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                report(exc)
                raise
            report(None)
            return conn

    return Reporting


class PostgresStore(SQLStore):
    """A ``Store`` on a PostgreSQL database, safe for many processes at once."""

    placeholder: ClassVar[str] = "%s"
    # A database restored (recreated: a new oid) or a server restarted or failed over to
    # (a new start time) may hold an older log than the cursor a reader kept; a reload
    # after a mere restart costs little.
    head_statement: ClassVar[str] = (
        "SELECT max(seq), (SELECT oid FROM pg_database WHERE datname = current_database())"
        " || '@' || pg_postmaster_start_time() FROM changes"
    )
    duplicate_key_error: ClassVar[type[Exception]] = psycopg.errors.UniqueViolation

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 4,
        connect_timeout: int = 2,
        acquire_timeout: float = 2.0,
        statement_timeout: float = 10.0,
        change_log_keep: int = CHANGE_LOG_KEEP,
    ) -> None:
        """Open a pool on ``url`` (``postgresql://user:password@host:port/dbname?...``).

        ``connect_timeout`` (seconds, libpq's minimum is 2) bounds one connection
        attempt; ``acquire_timeout`` bounds how long an operation waits for a
        connection, ``statement_timeout`` how long one statement may run or wait for a
        lock, before ``StoreUnavailable``. Parameters in the URL take precedence.
        """
        super().__init__(change_log_keep=change_log_keep)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # The message would quote the URL, password included.
            raise StoreError("invalid PostgreSQL URL") from None
        params.setdefault("connect_timeout", connect_timeout)
        params.setdefault("application_name", "swarm-oauth")
        # A server that vanishes without closing the socket (a partition) is noticed in
        # about 20 s instead of the kernel's hours, so no operation hangs on it.
        for name, value in (
            ("keepalives_idle", 10),
            ("keepalives_interval", 5),
            ("keepalives_count", 2),
            ("tcp_user_timeout", 20_000),
        ):
            params.setdefault(name, value)
        self._statement_timeout_ms = int(statement_timeout * 1000)
        self._conninfo = make_conninfo("", **params)
        self._acquire_timeout = acquire_timeout
        self._connect_error: str | None = None  # why the pool's last connect failed
        # reconnect_timeout=0: no background retries with growing back-off (which could
        # leave the pool empty for minutes after the server is back); each operation
        # that finds no connection triggers a fresh attempt instead.
        self._pool: ConnectionPool[psycopg.Connection] = ConnectionPool(
            self._conninfo,
            connection_class=_reporting_connection(self._connected),
            kwargs={"autocommit": True},
            min_size=1,
            max_size=max_connections,
            timeout=acquire_timeout,
            reconnect_timeout=0,
            name="swarm-oauth",
            reconnect_failed=self._connect_failed,
            configure=self._configure_session,
            open=True,
        )
        self._unreachable = False
        self._listener: psycopg.Connection | None = None
        self._listener_lock = threading.Lock()
        self._closed = False

    # -- plumbing ------------------------------------------------------------------------

    def _connected(self, error: psycopg.Error | None) -> None:
        self._connect_error = None if error is None else _describe(error, prefix="")

    def _connect_failed(self, pool: ConnectionPool[psycopg.Connection]) -> None:
        # Called from a pool worker when it gave up opening a connection; cleared by the
        # next operation that gets one.
        self._unreachable = True

    def _configure_session(self, conn: psycopg.Connection) -> None:
        # Bounds on the server side: no statement or lock wait (the write lock behind a
        # stuck writer) runs forever, and a session that died mid-transaction releases
        # the write lock instead of holding it until TCP gives up. And READ COMMITTED
        # whatever the database or role defaults to: a write's checks must read what the
        # writer before it committed, and under REPEATABLE READ or SERIALIZABLE the
        # snapshot is taken by the advisory lock's own statement, before its wait.
        timeout = str(self._statement_timeout_ms)
        conn.execute(
            "SELECT set_config('statement_timeout', %s, false),"
            " set_config('idle_in_transaction_session_timeout', %s, false),"
            " set_config('default_transaction_isolation', 'read committed', false)",
            (timeout, timeout),
        )

    def _read(self, fn: Callable[[Executor], T]) -> T:
        return self._run(fn, lock=None)

    def _write(self, fn: Callable[[Executor], T]) -> T:
        return self._run(fn, lock=WRITE_LOCK)

    def _announce(self, conn: Executor, seq: int) -> None:
        # Delivered at commit, and only if the transaction commits.
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(seq)))

    def _run(self, fn: Callable[[Executor], T], *, lock: int | None, unbounded: bool = False) -> T:
        """Run ``fn`` (in a transaction holding advisory ``lock``, unless None); with
        ``unbounded``, without the statement timeout."""
        try:
            return self._attempt(fn, lock, unbounded)
        except _StaleConnection:
            # A server restart kills every pooled connection, and only using one tells.
            # Nothing was committed: sweep the dead ones out and try once more.
            self._pool.check()
        try:
            return self._attempt(fn, lock, unbounded)
        except _StaleConnection as exc:
            raise StoreUnavailable(str(exc)) from None

    def _attempt(self, fn: Callable[[Executor], T], lock: int | None, unbounded: bool) -> T:
        committing = False
        timeout = UNREACHABLE_ACQUIRE_TIMEOUT if self._unreachable else self._acquire_timeout
        try:
            with self._pool.connection(timeout=timeout) as conn:
                self._unreachable = False
                try:
                    if lock is None:
                        return fn(conn)
                    with conn.transaction():
                        if unbounded:
                            conn.execute("SET LOCAL statement_timeout = 0")
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
                        result = fn(conn)
                        committing = True
                    return result
                except psycopg.OperationalError as exc:
                    # Lost before COMMIT was sent: the server rolled back, a retry is
                    # safe. Lost during COMMIT: the outcome is unknown, so no retry.
                    if conn.broken and not committing:
                        raise _StaleConnection(_describe(exc)) from None
                    raise
        except PoolTimeout:
            waited = f"postgresql: no connection within {timeout:g} s"
            # A pool whose connects succeed timed out because every connection was busy.
            reason = self._connect_error
            raise StoreUnavailable(f"{waited}: {reason}" if reason else waited) from None
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(_describe(exc)) from None
        except psycopg.DataError as exc:
            # SQLSTATE class 22 (and psycopg's own refusal of NUL in text): a value the
            # server cannot hold, which says nothing about whether it is up.
            raise StoreRejected(_describe(exc)) from None
        except psycopg.Error as exc:
            raise StoreError(_describe(exc)) from None

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply pending migrations, one replica at a time (advisory lock), each with its
        row in ``schema_version``, all in one transaction. A schema already current is
        only read: a role without the right to create tables starts on one that
        ``swarm-oauth db upgrade`` (as the owner) brought up to date."""
        if self._schema_version() >= len(MIGRATIONS):
            return

        def go(conn: Executor) -> None:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
            )
            current = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            version = int(current.fetchall()[0][0])
            # A newer schema than this program knows is left alone: migrations only add,
            # so older replicas keep working during a rolling upgrade.
            for number, statements in enumerate(MIGRATIONS, start=1):
                if number > version:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(
                        "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                        (number, time.time()),
                    )

        # Unbounded: a replica waits for another's migration rather than fail its start.
        self._run(go, lock=MIGRATION_LOCK, unbounded=True)

    def _schema_version(self) -> int:
        """The newest migration applied here (0: none, or no schema at all)."""

        def go(conn: Executor) -> int:
            exists = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchall()
            if not exists[0][0]:
                return 0
            rows = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchall()
            return int(rows[0][0])

        return self._read(go)

    def initialized(self) -> bool:
        """Whether ``schema_version`` exists in this database (a server created it)."""
        rows = self._read(
            lambda conn: conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchall()
        )
        return bool(rows[0][0])

    def close(self) -> None:
        """Close the pool and the LISTEN connection."""
        self._closed = True
        self._pool.close()
        with self._listener_lock:
            self._drop_listener()

    # -- change notifications ------------------------------------------------------------

    def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a NOTIFY from a committed change.

        Uses a dedicated connection outside the pool (LISTEN needs one that stays
        idle). When it cannot be opened, waits out ``timeout`` and returns False.
        """
        deadline = time.monotonic() + timeout
        with self._listener_lock:
            conn = self._listener or self._listen()
            if conn is None:
                time.sleep(max(0.0, deadline - time.monotonic()))
                return False
            try:
                remaining = max(0.0, deadline - time.monotonic())
                woke = False
                for _ in conn.notifies(timeout=remaining, stop_after=1):
                    woke = True
                if woke:
                    # Changes come in bursts; one wake-up covers the whole burst.
                    for _ in conn.notifies(timeout=0):
                        pass
                return woke
            except psycopg.Error:
                self._drop_listener()
                # Changes may have been made while the connection was dying.
                return True

    def _listen(self) -> psycopg.Connection | None:
        if self._closed:
            return None
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
        except psycopg.Error:
            return None
        try:
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            conn.close()
            return None
        self._listener = conn
        return conn

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
