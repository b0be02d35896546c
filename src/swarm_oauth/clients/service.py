"""Adding, removing and rotating clients: the operations behind the clients API."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from swarm_oauth.clients.secrets import generate_secret, hash_secret
from swarm_oauth.identifiers import (
    MAX_GRACE_SECONDS,
    InvalidClientData,
    validate_client_id,
    validate_list,
)
from swarm_oauth.store import ClientRecord, RevocationRecord, Store
from swarm_oauth.timestamps import iso8601

log = logging.getLogger("swarm_oauth.clients")

MAX_METADATA_BYTES = 4096


class ClientNotFound(LookupError):
    """No client has this id."""


@dataclass(frozen=True, slots=True)
class IssuedSecret:
    """A client record with the clear secret that was just generated for it."""

    record: ClientRecord
    secret: str

    def __repr__(self) -> str:  # a stray log or traceback must not print the secret
        return f"IssuedSecret(client_id={self.record.client_id!r}, secret=<redacted>)"


def validate_metadata(metadata: object) -> dict[str, Any]:
    """A JSON object of at most ``MAX_METADATA_BYTES`` once encoded."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidClientData("metadata must be a JSON object")
    try:
        # What the stores and every later response will have to encode: strict JSON
        # (no NaN or Infinity) in UTF-8 (no lone surrogates).
        encoded = json.dumps(metadata, allow_nan=False, ensure_ascii=False).encode()
    except (ValueError, UnicodeEncodeError, RecursionError):
        raise InvalidClientData(
            "metadata must be plain JSON: no NaN, Infinity or lone surrogates"
        ) from None
    if len(encoded) > MAX_METADATA_BYTES:
        raise InvalidClientData(f"metadata must encode to at most {MAX_METADATA_BYTES} bytes")
    if b"\\u0000" in encoded:  # json escapes NUL so; PostgreSQL's jsonb refuses it
        raise InvalidClientData("metadata must not contain NUL characters")
    return metadata


def validate_grace(grace_seconds: object) -> int:
    """A whole number of seconds between 0 and 30 days."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
        raise InvalidClientData("grace_seconds must be a whole number")
    if not 0 <= grace_seconds <= MAX_GRACE_SECONDS:
        raise InvalidClientData(f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")
    return grace_seconds


class ClientService:
    """Client lifecycle on a store; secrets leave only inside ``IssuedSecret``."""

    def __init__(
        self,
        store: Store,
        clock: Callable[[], float] = time.time,
        on_change: Callable[[str], None] = lambda client_id: None,
        cutoff: Callable[[str, float], RevocationRecord] | None = None,
        on_revoked: Callable[[RevocationRecord], None] = lambda record: None,
    ) -> None:
        """``cutoff(client_id, now)`` is the revocation of every token a client being
        removed was issued up to ``now``, stored with the removal; ``on_revoked`` applies
        it in this process once stored."""
        self._store = store
        self._clock = clock
        # Lets this process's own caches drop a client at once rather than at the
        # watcher's next poll.
        self._on_change = on_change
        self._cutoff = cutoff
        self._on_revoked = on_revoked

    def add(
        self,
        client_id: object,
        scopes: object = None,
        audiences: object = None,
        metadata: object = None,
        *,
        registration_token_hash: str | None = None,
    ) -> IssuedSecret:
        """Register a client with a fresh secret; ``ClientExists`` if the id is taken.

        ``registration_token_hash``: the hashed RFC 7592 registration access token of a
        client registered through RFC 7591 (see ``clients.registration``).
        """
        now = self._clock()
        secret = generate_secret()
        record = ClientRecord(
            client_id=validate_client_id(client_id),
            secret_hash=hash_secret(secret),
            scopes=validate_list("scopes", scopes),
            audiences=validate_list("audiences", audiences),
            metadata=validate_metadata(metadata),
            created_at=now,
            updated_at=now,
            registration_token_hash=registration_token_hash,
        )
        self._store.add_client(record)
        self._changed("client added", record)
        return IssuedSecret(record, secret)

    def remove(self, client_id: object) -> None:
        """Delete a client and revoke the tokens it holds; ``ClientNotFound`` when
        unknown."""
        client_id = validate_client_id(client_id)
        # A token stays valid to its `exp` whether its client exists or not, and the
        # services behind forward-auth, introspection and the SDK's revocation check are
        # to refuse a removed client's tokens at once: the cut-off goes with the removal,
        # in one transaction. Apart, a tokens process that saw the cut-off first would
        # hold a request for its second, then issue from the client it still had cached,
        # a token after the cut-off of a client about to be gone.
        now = self._clock()
        revocation = self._cutoff(client_id, now) if self._cutoff is not None else None
        if not self._store.remove_client(client_id, revocation):
            raise ClientNotFound(client_id)
        if revocation is not None:
            self._on_revoked(revocation)
            log.info("client tokens revoked", extra={"client_id": client_id, "issued_before": now})
        self._on_change(client_id)
        log.info("client removed", extra={"client_id": client_id})

    def rotate(
        self, client_id: object, grace_seconds: object = 0, replace_current: object = False
    ) -> IssuedSecret:
        """Give a client a new secret; the old one keeps working for ``grace_seconds``.

        With ``replace_current``, the current secret is discarded instead (its holder lost
        it before handing it out) and the previous one keeps its grace: a registrar that
        crashed in the middle of a rotation finishes it without cutting off the tasks that
        still use the previous secret.
        """
        client_id = validate_client_id(client_id)
        grace = validate_grace(grace_seconds)
        if not isinstance(replace_current, bool):
            raise InvalidClientData("replace_current must be true or false")
        now = self._clock()
        secret = generate_secret()
        # The API publishes when a grace ends in whole seconds: the secret stops working at
        # that very second (the grace rounded up), so a registrar that reads it never calls
        # a secret spent while it still works.
        ends = float(math.ceil(now + grace)) if grace else None
        record = self._store.rotate_client_secret(
            client_id,
            hash_secret(secret),
            ends,
            now,
            replace_current=replace_current,
        )
        if record is None:
            raise ClientNotFound(client_id)
        self._changed("client secret rotated", record, grace_seconds=grace)
        return IssuedSecret(record, secret)

    def update(
        self,
        client_id: object,
        scopes: object = None,
        audiences: object = None,
        metadata: object = None,
    ) -> ClientRecord:
        """Change what a client may ask for (and its metadata) without a new secret.

        A field left None is kept; an empty list clears it.
        """
        client_id = validate_client_id(client_id)
        record = self._store.update_client(
            client_id,
            scopes=None if scopes is None else validate_list("scopes", scopes),
            audiences=None if audiences is None else validate_list("audiences", audiences),
            metadata=None if metadata is None else validate_metadata(metadata),
            now=self._clock(),
        )
        if record is None:
            raise ClientNotFound(client_id)
        self._changed("client updated", record)
        return record

    def _changed(self, message: str, record: ClientRecord, **extra: object) -> None:
        """Drop the client from this process's caches and log the write (never a secret)."""
        self._on_change(record.client_id)
        log.info(
            message,
            extra={
                "client_id": record.client_id,
                "secret_version": record.secret_version,
                "scopes": list(record.scopes),
                "audiences": list(record.audiences),
                **extra,
            },
        )

    def get(self, client_id: object) -> ClientRecord:
        """The client's record; ``ClientNotFound`` when unknown."""
        record = self._store.get_client(validate_client_id(client_id))
        if record is None:
            raise ClientNotFound(client_id)
        return record

    def list(self, limit: int | None = None, after: str | None = None) -> list[ClientRecord]:
        """Clients ordered by id, after the id ``after``, at most ``limit`` of them."""
        return self._store.list_clients(limit, after)


def public_record(record: ClientRecord) -> dict[str, Any]:
    """What the API shows of a client: never a secret or a hash."""
    view: dict[str, Any] = {
        "client_id": record.client_id,
        "scopes": list(record.scopes),
        "audiences": list(record.audiences),
        "metadata": dict(record.metadata),
        "secret_version": record.secret_version,
        "created_at": iso8601(record.created_at),
        "updated_at": iso8601(record.updated_at),
    }
    if record.previous_secret_expires_at is not None:
        view["previous_secret_expires_at"] = iso8601(record.previous_secret_expires_at)
    return view


def issued_view(issued: IssuedSecret) -> dict[str, Any]:
    """The add/rotate response: the record plus the secret, shown this once."""
    return {**public_record(issued.record), "client_secret": issued.secret}
