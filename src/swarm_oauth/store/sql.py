"""What the SQL backends share: the statements and the operations built on them.

SQLite and PostgreSQL run the same DML on the same tables; a backend supplies only what
truly differs: the placeholder style, how a connection is obtained, how a write
transaction is serialized, the DDL and its migrations, and how other processes are told
that the change log grew.

The change log must never let a consumer miss a change. A consumer reads the entries
after its cursor and moves the cursor to the newest one it saw, so sequence numbers must
become visible in increasing order: were transaction A to take seq 10, B seq 11, and B
commit first, a reader would move past 11 and never see 10. Both backends therefore run
every mutation in a transaction serialized against all other mutations before the
sequence number is taken (SQLite: its single writer lock; PostgreSQL: a transaction-level
advisory lock), so seq order is commit order. Gaps (a seq taken by a transaction that
rolled back) are harmless: nothing ever fills them later.
"""

# S608: the statements below interpolate only this package's constant column lists and
# the driver's placeholder; every value travels as a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from swarm_oauth.store.base import (
    Change,
    ChangeBatch,
    ChangeKind,
    ClientExists,
    ClientRecord,
    KeyRecord,
    RevocationRecord,
)
from swarm_oauth.store.records import (
    CHANGE_LOG_KEEP,
    CLIENT_COLUMNS,
    KEY_COLUMNS,
    REVOCATION_COLUMNS,
    client_from_row,
    client_grants,
    client_params,
    key_from_row,
    key_params,
    revocation_from_row,
    revocation_params,
)

T = TypeVar("T")

# LIMIT for "every row": the largest value PostgreSQL's bigint (and SQLite) accepts.
UNBOUNDED = 2**63 - 1


class Executor(Protocol):
    """The one method both ``sqlite3.Connection`` and ``psycopg.Connection`` offer."""

    def execute(self, query: Any, params: Any = ..., /) -> Any:
        """Run one statement; the result has ``fetchall()`` and ``rowcount``."""


class Statements:
    """The DML of both backends, written once, in a given placeholder style."""

    def __init__(self, mark: str) -> None:
        def marks(columns: str) -> str:
            return ", ".join([mark] * len(columns.split(",")))

        self.ping = "SELECT 1"
        self.insert_client = (
            f"INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ({marks(CLIENT_COLUMNS)})"
        )
        self.get_client = f"SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id = {mark}"
        # Keyset paging: the id is the primary key, so each page is an index range scan.
        self.list_clients = (
            f"SELECT {CLIENT_COLUMNS} FROM clients WHERE client_id > {mark}"
            f" ORDER BY client_id LIMIT {mark}"
        )
        self.count_clients = "SELECT count(*) FROM clients"
        self.remove_client = f"DELETE FROM clients WHERE client_id = {mark}"
        # One statement, so no reader ever sees the new hash without the old one kept.
        self.rotate_client = (
            "UPDATE clients SET"
            f" previous_secret_hash = CASE WHEN {mark} THEN secret_hash ELSE NULL END,"
            f" previous_secret_expires_at = {mark},"
            f" secret_hash = {mark}, secret_version = secret_version + 1, updated_at = {mark}"
            f" WHERE client_id = {mark} RETURNING {CLIENT_COLUMNS}"
        )
        # The current secret was never handed out (its holder crashed): replace it and keep
        # the previous one, and its grace, for whoever still holds that.
        self.replace_client_secret = (
            f"UPDATE clients SET secret_hash = {mark}, secret_version = secret_version + 1,"
            f" updated_at = {mark} WHERE client_id = {mark} RETURNING {CLIENT_COLUMNS}"
        )
        self.update_client = (
            f"UPDATE clients SET scopes = {mark}, audiences = {mark}, metadata = {mark},"
            f" updated_at = {mark} WHERE client_id = {mark}"
        )
        self.list_keys = (
            f"SELECT {KEY_COLUMNS} FROM signing_keys"
            f" WHERE unpublish_at IS NULL OR unpublish_at > {mark}"
            " ORDER BY activates_at, created_at"
        )
        self.signing_keys_at = (
            f"SELECT kid FROM signing_keys WHERE retires_at IS NULL OR retires_at > {mark}"
        )
        self.keys_activated_after = (
            "SELECT kid FROM signing_keys"
            f" WHERE (retires_at IS NULL OR retires_at > {mark}) AND activates_at > {mark}"
        )
        self.insert_key = f"INSERT INTO signing_keys ({KEY_COLUMNS}) VALUES ({marks(KEY_COLUMNS)})"
        self.retire_key = (
            f"UPDATE signing_keys SET retires_at = {mark}, unpublish_at = {mark} WHERE kid = {mark}"
        )
        # A second revocation of the same key keeps the later cut-off and expiry (CASE,
        # not max() or greatest(): the one spelling both backends know).
        self.add_revocation = (
            f"INSERT INTO revocations ({REVOCATION_COLUMNS})"
            f" VALUES ({marks(REVOCATION_COLUMNS)}) ON CONFLICT (key) DO UPDATE SET"
            " issued_before = CASE WHEN excluded.issued_before > revocations.issued_before"
            " THEN excluded.issued_before ELSE revocations.issued_before END,"
            " expires_at = CASE WHEN excluded.expires_at > revocations.expires_at"
            " THEN excluded.expires_at ELSE revocations.expires_at END"
        )
        self.prune_revocations = f"DELETE FROM revocations WHERE expires_at <= {mark}"
        self.list_revocations = (
            f"SELECT {REVOCATION_COLUMNS} FROM revocations WHERE expires_at > {mark}"
        )
        self.log_change = f"INSERT INTO changes (kind, key) VALUES ({mark}, {mark}) RETURNING seq"
        self.prune_changes = f"DELETE FROM changes WHERE seq <= {mark}"
        self.raise_horizon = (
            f"UPDATE changes_pruned SET through_seq = {mark} WHERE through_seq < {mark}"
        )
        self.horizon = "SELECT through_seq FROM changes_pruned"
        self.last_change = "SELECT max(seq) FROM changes"
        self.changes_after = f"SELECT seq, kind, key FROM changes WHERE seq > {mark} ORDER BY seq"


class SQLStore(ABC):
    """The ``Store`` operations on top of a backend's connections and transactions."""

    #: The DB-API parameter marker of the backend's driver.
    placeholder: ClassVar[str]
    #: What the driver raises when an insert hits the client id's primary key.
    duplicate_key_error: ClassVar[type[Exception]]
    #: The change log's head, and what tells this database apart from one restored or
    #: failed over to in its place (``NULL`` where the backend watches that otherwise).
    head_statement: ClassVar[str] = "SELECT max(seq), NULL FROM changes"

    def __init__(self, *, change_log_keep: int = CHANGE_LOG_KEEP) -> None:
        self._sql = Statements(self.placeholder)
        self._keep = change_log_keep
        # Prune in steps rather than on every write; the log holds keep..keep+step entries.
        self._prune_every = max(1, change_log_keep // 10)
        self._identity: object = None  # of the database, as changes_since last saw it

    # -- what a backend provides -----------------------------------------------------------

    @abstractmethod
    def _read(self, fn: Callable[[Executor], T]) -> T:
        """Run ``fn`` with a connection, outside any write transaction."""

    @abstractmethod
    def _write(self, fn: Callable[[Executor], T]) -> T:
        """Run ``fn`` in a transaction serialized against every other write, then commit.

        If ``fn`` raises, roll back and let the exception through.
        """

    @abstractmethod
    def _announce(self, conn: Executor, seq: int) -> None:
        """Tell other processes, at commit, that change ``seq`` exists (if the backend can)."""

    # -- the change log --------------------------------------------------------------------

    def _log(self, conn: Executor, kind: ChangeKind, key: str) -> None:
        seq = int(conn.execute(self._sql.log_change, (kind, key)).fetchall()[0][0])
        # With gaps (PostgreSQL) a multiple may be skipped; pruning then waits for the next.
        if seq % self._prune_every == 0:
            horizon = seq - self._keep
            conn.execute(self._sql.prune_changes, (horizon,))
            conn.execute(self._sql.raise_horizon, (horizon, horizon))
        self._announce(conn, seq)

    def last_change(self) -> int:
        """The newest change sequence number (0 when none)."""
        rows = self._read(lambda conn: conn.execute(self._sql.last_change).fetchall())
        return int(rows[0][0] or 0)

    def changes_since(self, cursor: int) -> ChangeBatch:
        """Changes after ``cursor``; incomplete when the log was pruned past it."""

        def go(conn: Executor) -> ChangeBatch:
            rows: Sequence[Sequence[Any]] = conn.execute(
                self._sql.changes_after, (cursor,)
            ).fetchall()
            head, identity = conn.execute(self.head_statement).fetchall()[0]
            head = int(head or 0)
            seen, self._identity = self._identity, identity
            if cursor > head or (seen is not None and identity != seen):
                # The log went back (a restore, a failover to a standby that lagged) or
                # is another database's: numbers past the head may come again, for other
                # changes. Whoever cached anything must drop it, and follow from here.
                return ChangeBatch(cursor=head, complete=False)
            if not rows:
                # Pruning always keeps the newest entries, so an empty answer means the
                # cursor is at the head and nothing was lost.
                return ChangeBatch(cursor=cursor)
            # Read after the rows: a prune in between errs towards "incomplete" (a
            # needless reload), never towards a silent gap.
            horizon = int(conn.execute(self._sql.horizon).fetchall()[0][0])
            changes = [Change(seq=int(r[0]), kind=r[1], key=r[2]) for r in rows]
            return ChangeBatch(cursor=changes[-1].seq, changes=changes, complete=cursor >= horizon)

        return self._read(go)

    # -- clients ---------------------------------------------------------------------------

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a trivial query."""
        self._read(lambda conn: conn.execute(self._sql.ping).fetchall())

    def add_client(self, record: ClientRecord) -> None:
        """Insert a client; ``ClientExists`` when the id is taken."""

        def go(conn: Executor) -> None:
            try:
                conn.execute(self._sql.insert_client, client_params(record))
            except self.duplicate_key_error:
                raise ClientExists(record.client_id) from None
            self._log(conn, "client", record.client_id)

        self._write(go)

    def get_client(self, client_id: str) -> ClientRecord | None:
        """The client with this id, or None."""
        rows = self._read(lambda conn: conn.execute(self._sql.get_client, (client_id,)).fetchall())
        return client_from_row(rows[0]) if rows else None

    def list_clients(
        self, limit: int | None = None, after: str | None = None
    ) -> list[ClientRecord]:
        """Clients ordered by id, after ``after``, at most ``limit`` (None: no bound)."""
        # "" sorts before every valid id (ids are never empty).
        params = (after or "", UNBOUNDED if limit is None else limit)
        rows = self._read(lambda conn: conn.execute(self._sql.list_clients, params).fetchall())
        return [client_from_row(row) for row in rows]

    def count_clients(self) -> int:
        """How many clients there are."""
        rows = self._read(lambda conn: conn.execute(self._sql.count_clients).fetchall())
        return int(rows[0][0])

    def remove_client(self, client_id: str, revocation: RevocationRecord | None = None) -> bool:
        """Delete a client, with ``revocation`` stored in the same transaction; False when
        there was none."""

        def go(conn: Executor) -> bool:
            removed = bool(conn.execute(self._sql.remove_client, (client_id,)).rowcount > 0)
            if removed:
                self._log(conn, "client", client_id)
                if revocation is not None:
                    conn.execute(self._sql.add_revocation, revocation_params(revocation))
                    self._log(conn, "revocation", revocation.key)
            return removed

        return self._write(go)

    def rotate_client_secret(
        self,
        client_id: str,
        secret_hash: str,
        previous_expires_at: float | None,
        now: float,
        *,
        replace_current: bool = False,
    ) -> ClientRecord | None:
        """Make ``secret_hash`` current, keeping the old one until ``previous_expires_at``
        (None: drop it now); with ``replace_current``, the current one is dropped and the
        previous one kept as it is. None when the client is unknown."""
        params: tuple[object, ...]
        if replace_current:
            statement, params = self._sql.replace_client_secret, (secret_hash, now, client_id)
        else:
            statement = self._sql.rotate_client
            params = (
                previous_expires_at is not None,
                previous_expires_at,
                secret_hash,
                now,
                client_id,
            )

        def go(conn: Executor) -> ClientRecord | None:
            rows = conn.execute(statement, params).fetchall()
            if not rows:
                return None
            self._log(conn, "client", client_id)
            return client_from_row(rows[0])

        return self._write(go)

    def update_client(
        self,
        client_id: str,
        *,
        scopes: tuple[str, ...] | None = None,
        audiences: tuple[str, ...] | None = None,
        metadata: dict[str, Any] | None = None,
        now: float,
    ) -> ClientRecord | None:
        """Replace the fields given (None keeps one); the secret is untouched."""

        def go(conn: Executor) -> ClientRecord | None:
            rows = conn.execute(self._sql.get_client, (client_id,)).fetchall()
            if not rows:
                return None
            current = client_from_row(rows[0])
            updated = dataclasses.replace(
                current,
                scopes=current.scopes if scopes is None else scopes,
                audiences=current.audiences if audiences is None else audiences,
                metadata=current.metadata if metadata is None else metadata,
                updated_at=now,
            )
            conn.execute(self._sql.update_client, (*client_grants(updated), now, client_id))
            self._log(conn, "client", client_id)
            return updated

        return self._write(go)

    # -- revocations -----------------------------------------------------------------------

    def add_revocation(self, record: RevocationRecord, now: float) -> None:
        """Store a revocation (merging with one of the same key) and drop expired ones."""

        def go(conn: Executor) -> None:
            conn.execute(self._sql.add_revocation, revocation_params(record))
            # Expired entries need no change-log entry: every reader ignores them anyway.
            conn.execute(self._sql.prune_revocations, (now,))
            self._log(conn, "revocation", record.key)

        self._write(go)

    def list_revocations(self, now: float) -> list[RevocationRecord]:
        """Every revocation still in force at ``now``."""
        rows = self._read(lambda conn: conn.execute(self._sql.list_revocations, (now,)).fetchall())
        return [revocation_from_row(row) for row in rows]

    # -- keys ------------------------------------------------------------------------------

    def list_keys(self) -> list[KeyRecord]:
        """Every key not yet unpublished, oldest first."""
        now = time.time()
        rows = self._read(lambda conn: conn.execute(self._sql.list_keys, (now,)).fetchall())
        return [key_from_row(row) for row in rows]

    def add_key(self, record: KeyRecord, *, only_if_no_active: bool = False) -> bool:
        """Insert a key, optionally only when none is signing or due to sign.

        The check and the insert share one serialized write transaction, so concurrent
        first starts create exactly one key.
        """

        def go(conn: Executor) -> bool:
            if (
                only_if_no_active
                and conn.execute(self._sql.signing_keys_at, (record.created_at,)).fetchall()
            ):
                return False
            conn.execute(self._sql.insert_key, key_params(record))
            self._log(conn, "key", record.kid)
            return True

        return self._write(go)

    def rotate_keys(
        self,
        record: KeyRecord,
        unpublish_at: float,
        *,
        unless_activated_after: float | None = None,
    ) -> list[str] | None:
        """Insert ``record`` and retire, in the same transaction, every key that would
        still sign when it activates: they stop signing then and leave the JWKS at
        ``unpublish_at``. The kids retired; None when ``unless_activated_after`` found a
        key that has not retired and activated after it (nothing changed)."""

        def go(conn: Executor) -> list[str] | None:
            if (
                unless_activated_after is not None
                and conn.execute(
                    self._sql.keys_activated_after, (record.created_at, unless_activated_after)
                ).fetchall()
            ):
                return None
            retiring = [
                str(row[0])
                for row in conn.execute(
                    self._sql.signing_keys_at, (record.activates_at,)
                ).fetchall()
            ]
            conn.execute(self._sql.insert_key, key_params(record))
            self._log(conn, "key", record.kid)
            for kid in retiring:
                conn.execute(self._sql.retire_key, (record.activates_at, unpublish_at, kid))
                self._log(conn, "key", kid)
            return retiring

        return self._write(go)

    def schedule_key_retirement(
        self, kid: str, retires_at: float | None, unpublish_at: float | None
    ) -> None:
        """Set when a key stops signing and when it leaves the JWKS (None: never)."""

        def go(conn: Executor) -> None:
            if conn.execute(self._sql.retire_key, (retires_at, unpublish_at, kid)).rowcount:
                self._log(conn, "key", kid)

        self._write(go)
