"""The store contract: records and the operations every backend provides.

Backends are synchronous; the web layer calls them from a worker thread. Every mutation
also appends to a change log in the same transaction, which is how other processes that
share the store learn to drop what they cached (see ``swarm_oauth.watcher``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol


class StoreError(Exception):
    """Base class of store errors; messages never contain secrets."""


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the operation may succeed later."""


class StoreRejected(StoreError):
    """The store refused a value it was given (PostgreSQL's text holds no NUL, for one):
    the caller's input is at fault, not the store, which is up."""


class ClientExists(StoreError):
    """A client with this id is already registered."""


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A registered OAuth client as the store keeps it (hashes only, never a secret)."""

    client_id: str
    secret_hash: str = field(repr=False)
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    metadata: Mapping[str, Any]
    created_at: float
    updated_at: float
    # Incremented by every rotation, so that a holder of a secret (the registrar's Docker
    # secret) can tell whether it still holds the current one without seeing it.
    secret_version: int = 1
    previous_secret_hash: str | None = field(default=None, repr=False)
    previous_secret_expires_at: float | None = None
    # The hash of the RFC 7592 registration access token of a client registered through
    # RFC 7591; None for clients added through the admin API (no RFC 7592 access).
    registration_token_hash: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A signing key: its private half encrypted with the master key.

    A key is published (in the JWKS) from creation until ``unpublish_at``, signs from
    ``activates_at`` until ``retires_at``; publishing before signing lets verifiers learn
    it first, unpublishing after every token it signed has expired keeps them valid.
    """

    kid: str
    alg: str
    private_key_encrypted: bytes = field(repr=False)
    certificate_pem: str
    created_at: float
    activates_at: float
    retires_at: float | None = None
    unpublish_at: float | None = None

    def signs_at(self, now: float) -> bool:
        """Whether this key may sign at ``now``."""
        return self.activates_at <= now and (self.retires_at is None or now < self.retires_at)

    def published_at(self, now: float) -> bool:
        """Whether this key belongs in the JWKS at ``now``."""
        return self.unpublish_at is None or now < self.unpublish_at


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    """Revoked access tokens: one token (``jti``), or every token of ``client_id`` issued
    at or before ``issued_before``. Kept until ``expires_at``, when every token it covers
    has expired."""

    client_id: str
    expires_at: float
    jti: str | None = None
    issued_before: float | None = None

    @property
    def key(self) -> str:
        """What identifies it: a later revocation with the same key replaces it."""
        return f"jti:{self.jti}" if self.jti is not None else f"client:{self.client_id}"


ChangeKind = Literal["client", "key", "revocation"]


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the change log: which record changed, not how."""

    seq: int
    kind: ChangeKind
    key: str


@dataclass(frozen=True, slots=True)
class ChangeBatch:
    """What happened since a cursor.

    ``complete`` is false when the log no longer reaches back to the cursor (it was
    pruned), in which case a consumer must drop everything it cached.
    """

    cursor: int
    changes: Sequence[Change] = field(default_factory=tuple)
    complete: bool = True


class Store(Protocol):
    """Persistence for clients, signing keys and revocations, shared by every server
    process."""

    def migrate(self) -> None:
        """Create or upgrade the schema; safe when several processes start at once."""

    def initialized(self) -> bool:
        """Whether a server has created the schema here (commands other than ``serve``
        refuse to work on a store that was never set up)."""

    def close(self) -> None:
        """Release connections."""

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers a trivial query."""

    def add_client(self, record: ClientRecord) -> None:
        """Insert a new client; raise ``ClientExists`` if its id is taken."""

    def get_client(self, client_id: str) -> ClientRecord | None:
        """The client with this id, or None."""

    def list_clients(
        self, limit: int | None = None, after: str | None = None
    ) -> list[ClientRecord]:
        """Clients ordered by id: those after the id ``after`` (all when None), at most
        ``limit`` of them (no bound when None)."""

    def count_clients(self) -> int:
        """How many clients there are."""

    def remove_client(self, client_id: str, revocation: RevocationRecord | None = None) -> bool:
        """Delete a client, and store ``revocation`` (its tokens' cut-off) in the same
        transaction, so that no process sees one without the other; False when there was
        no such client (and nothing is stored)."""

    def rotate_client_secret(
        self,
        client_id: str,
        secret_hash: str,
        previous_expires_at: float | None,
        now: float,
        *,
        replace_current: bool = False,
    ) -> ClientRecord | None:
        """Atomically make ``secret_hash`` current and keep the old hash until
        ``previous_expires_at`` (None: drop it now). With ``replace_current``, the current
        hash is replaced and the previous one stays as it was (the current secret was never
        handed out). None when the client is unknown."""

    def update_client(
        self,
        client_id: str,
        *,
        scopes: tuple[str, ...] | None = None,
        audiences: tuple[str, ...] | None = None,
        metadata: dict[str, Any] | None = None,
        now: float,
    ) -> ClientRecord | None:
        """Replace the given fields of a client, leaving its secret alone. None when the
        client is unknown."""

    def add_revocation(self, record: RevocationRecord, now: float) -> None:
        """Store a revocation and forget those expired at ``now``. A client's cut-off
        only ever moves later, and is kept as long as the longest one asked for."""

    def list_revocations(self, now: float) -> list[RevocationRecord]:
        """Every revocation still in force at ``now``."""

    def list_keys(self) -> list[KeyRecord]:
        """Every signing key that is still published or will be, oldest first."""

    def add_key(self, record: KeyRecord, *, only_if_no_active: bool = False) -> bool:
        """Insert a key. With ``only_if_no_active``, insert only when no key is signing
        or scheduled to sign, deciding under a lock so that concurrent first starts
        create exactly one. True when the key was inserted."""

    def rotate_keys(
        self,
        record: KeyRecord,
        unpublish_at: float,
        *,
        unless_activated_after: float | None = None,
    ) -> list[str] | None:
        """Insert ``record`` and, in one transaction, retire every key that would still
        sign at its ``activates_at``: they stop then and leave the JWKS at
        ``unpublish_at``. Returns the retired kids.

        With ``unless_activated_after``, first check, under the same lock, whether a key
        that has not retired at ``record.created_at`` activated (or activates) after that
        instant; if one did, change nothing and return None. That makes "rotate if the
        current key is older than N" happen once however many processes decide it at
        the same moment."""

    def schedule_key_retirement(
        self, kid: str, retires_at: float | None, unpublish_at: float | None
    ) -> None:
        """Set when a key stops signing and when it leaves the JWKS (None: never)."""

    def last_change(self) -> int:
        """The newest change sequence number (0 when none)."""

    def changes_since(self, cursor: int) -> ChangeBatch:
        """Changes after ``cursor``, oldest first.

        A consumer that moves its cursor to each batch's ``cursor`` never misses a
        committed change, even when writers in several processes commit at once: every
        backend hands out sequence numbers in commit order (see ``store.sql``).
        """

    def wait_for_change(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a hint that the change log grew.

        True when woken early by such a hint, False when the time ran out. It is only a
        hint that lets a poller react at once instead of at its next tick: the change log
        stays the truth, so a poller calls ``changes_since`` after every return either
        way. Never raises; with the store unreachable it simply waits out ``timeout``.
        PostgreSQL wakes on LISTEN/NOTIFY; SQLite has no such signal and just sleeps.
        Call it from one thread at a time.
        """
