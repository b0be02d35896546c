"""SQLite store: the embedded default, one file in the data dir.

WAL mode lets a ``clients`` process and a ``tokens`` process share the file: readers
never wait for the writer, and writers wait (``busy_timeout``) rather than fail.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

from swarm_oauth.secretfiles import make_private_file
from swarm_oauth.store.base import StoreError, StoreRejected, StoreUnavailable
from swarm_oauth.store.records import CHANGE_LOG_KEEP
from swarm_oauth.store.sql import Executor, SQLStore, T

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE clients (
            client_id TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL,
            scopes TEXT NOT NULL,
            audiences TEXT NOT NULL,
            metadata TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            secret_version INTEGER NOT NULL,
            previous_secret_hash TEXT,
            previous_secret_expires_at REAL
        )""",
        """CREATE TABLE signing_keys (
            kid TEXT PRIMARY KEY,
            alg TEXT NOT NULL,
            private_key_encrypted BLOB NOT NULL,
            certificate_pem TEXT NOT NULL,
            created_at REAL NOT NULL,
            activates_at REAL NOT NULL,
            retires_at REAL,
            unpublish_at REAL
        )""",
        """CREATE TABLE changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            key TEXT NOT NULL
        )""",
    ),
    (
        # Up to which seq the change log was pruned: tells "cursor is behind the log"
        # exactly, where the oldest remaining seq cannot (seqs may have gaps).
        "CREATE TABLE changes_pruned (through_seq INTEGER NOT NULL)",
        "INSERT INTO changes_pruned (through_seq) SELECT coalesce(min(seq) - 1, 0) FROM changes",
    ),
    (
        # key: "jti:<jti>" for one token, "client:<client_id>" for a client's cut-off.
        """CREATE TABLE revocations (
            key TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            jti TEXT,
            issued_before REAL,
            expires_at REAL NOT NULL
        )""",
        "CREATE INDEX revocations_expires_at ON revocations (expires_at)",
    ),
    # RFC 7592: the SHA-256 of a dynamically registered client's registration access token.
    ("ALTER TABLE clients ADD COLUMN registration_token_hash TEXT",),
)


class SQLiteStore(SQLStore):
    """A ``Store`` on one SQLite file, safe to share between processes.

    Change-log order: every write runs under ``BEGIN IMMEDIATE``, SQLite's single
    database-wide write lock, so no two writers ever hold a sequence number at once and
    seq order is commit order; AUTOINCREMENT never reuses a number.
    """

    placeholder: ClassVar[str] = "?"
    duplicate_key_error: ClassVar[type[Exception]] = sqlite3.IntegrityError

    def __init__(
        self,
        path: str | Path,
        *,
        busy_timeout_ms: int = 10_000,
        change_log_keep: int = CHANGE_LOG_KEEP,
    ) -> None:
        super().__init__(change_log_keep=change_log_keep)
        self.path = Path(path)
        # Two connections: in WAL mode readers never wait for a writer, so a write stuck
        # behind another process's lock (up to busy_timeout) must not hold up the reads
        # that the token path and the change watcher make.
        self._busy_timeout_ms = busy_timeout_ms
        self._restrict_files()
        self._writer, self._write_lock = self._connect(), threading.Lock()
        self._reader, self._read_lock = self._connect(), threading.Lock()
        self._opened = self._file_identity()

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            status = os.stat(self.path)
        except OSError:
            return None
        return status.st_dev, status.st_ino

    def _check_file(self) -> None:
        # A file deleted or replaced under open connections goes on working for them, and
        # every write after it is lost at the next start (and unseen by other processes
        # meanwhile): the store is unavailable instead, until a restart opens the file
        # the path names now.
        if self._file_identity() != self._opened:
            raise StoreUnavailable(
                f"sqlite: {self.path} is no longer the file this process opened (deleted, "
                "moved or replaced); restore it, or restart to open the one there now"
            )

    def _restrict_files(self) -> None:
        # SQLite creates its file 0644 less the umask, and gives the -wal and -shm files
        # the main file's mode: creating it 0600 first keeps all three private. Files
        # left readable by an older version are tightened.
        try:
            make_private_file(self.path)
            for suffix in ("-wal", "-shm"):
                make_private_file(self.path.with_name(self.path.name + suffix), create=False)
        except OSError as exc:
            raise StoreUnavailable(f"sqlite: {self.path}: {exc.strerror}") from None

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path,
                check_same_thread=False,
                isolation_level=None,
                timeout=self._busy_timeout_ms / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:  # OperationalError, and "file is not a database"
            raise StoreUnavailable(f"sqlite: {self.path}: {exc}") from None
        return conn

    # -- plumbing ------------------------------------------------------------------------

    def _run(
        self, conn: sqlite3.Connection, lock: threading.Lock, fn: Callable[[sqlite3.Connection], T]
    ) -> T:
        self._check_file()
        with lock:
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:  # locked, disk I/O, read-only...
                raise StoreUnavailable(f"sqlite: {exc}") from None
            except sqlite3.DataError as exc:  # a value too big to bind
                raise StoreRejected(f"sqlite: {exc}") from None
            except sqlite3.DatabaseError as exc:  # corrupt file, constraint we did not expect
                raise StoreError(f"sqlite: {type(exc).__name__}") from None

    @contextmanager
    def _immediate(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front, so a check-then-insert inside cannot
        # interleave with another process doing the same.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed: an open transaction would keep the lock.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _read(self, fn: Callable[[Executor], T]) -> T:
        return self._run(self._reader, self._read_lock, fn)

    def _write(self, fn: Callable[[Executor], T]) -> T:
        def go(conn: sqlite3.Connection) -> T:
            with self._immediate(conn):
                return fn(conn)

        return self._run(self._writer, self._write_lock, go)

    def _announce(self, conn: Executor, seq: int) -> None:
        # Nothing to signal across processes with; pollers find the change by reading.
        pass

    # -- lifecycle -----------------------------------------------------------------------

    def migrate(self) -> None:
        """Apply pending schema migrations under the write lock."""

        def go(conn: Executor) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, statements in enumerate(MIGRATIONS, start=1):
                if number > version:
                    for statement in statements:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {number}")

        self._write(go)

    def initialized(self) -> bool:
        """Whether the schema exists (``user_version``, which the migrations set, is not 0)."""
        rows = self._read(lambda conn: conn.execute("PRAGMA user_version").fetchall())
        return int(rows[0][0]) > 0

    def close(self) -> None:
        """Close both connections."""
        with self._write_lock:
            self._writer.close()
        with self._read_lock:
            self._reader.close()

    def wait_for_change(self, timeout: float) -> bool:
        """SQLite offers no cross-process signal: wait out ``timeout``; always False."""
        time.sleep(max(0.0, timeout))
        return False
