"""Row <-> record conversion shared by the SQL backends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from swarm_oauth.store.base import ClientRecord, KeyRecord, RevocationRecord

CLIENT_COLUMNS = (
    "client_id, secret_hash, scopes, audiences, metadata, created_at, updated_at, "
    "secret_version, previous_secret_hash, previous_secret_expires_at, registration_token_hash"
)
KEY_COLUMNS = (
    "kid, alg, private_key_encrypted, certificate_pem, created_at, activates_at, "
    "retires_at, unpublish_at"
)
REVOCATION_COLUMNS = "key, client_id, jti, issued_before, expires_at"

# How many change-log entries a backend keeps; a consumer further behind reloads all.
CHANGE_LOG_KEEP = 10_000


def _json(value: Any) -> Any:
    # SQLite hands JSON columns back as text; PostgreSQL's jsonb arrives already decoded.
    return json.loads(value) if isinstance(value, str | bytes) else value


def client_grants(record: ClientRecord) -> tuple[str, str, str]:
    """The encoded scopes, audiences and metadata: the fields an update may change."""
    return (
        json.dumps(list(record.scopes)),
        json.dumps(list(record.audiences)),
        json.dumps(dict(record.metadata), sort_keys=True),
    )


def client_params(record: ClientRecord) -> tuple[Any, ...]:
    """The values of ``CLIENT_COLUMNS`` for an insert, in order."""
    return (
        record.client_id,
        record.secret_hash,
        *client_grants(record),
        record.created_at,
        record.updated_at,
        record.secret_version,
        record.previous_secret_hash,
        record.previous_secret_expires_at,
        record.registration_token_hash,
    )


def client_from_row(row: Sequence[Any]) -> ClientRecord:
    """A ``ClientRecord`` from a row selected as ``CLIENT_COLUMNS``."""
    return ClientRecord(
        client_id=row[0],
        secret_hash=row[1],
        scopes=tuple(_json(row[2])),
        audiences=tuple(_json(row[3])),
        metadata=_json(row[4]),
        created_at=float(row[5]),
        updated_at=float(row[6]),
        secret_version=int(row[7]),
        previous_secret_hash=row[8],
        previous_secret_expires_at=None if row[9] is None else float(row[9]),
        registration_token_hash=row[10],
    )


def key_params(record: KeyRecord) -> tuple[Any, ...]:
    """The values of ``KEY_COLUMNS`` for an insert, in order."""
    return (
        record.kid,
        record.alg,
        record.private_key_encrypted,
        record.certificate_pem,
        record.created_at,
        record.activates_at,
        record.retires_at,
        record.unpublish_at,
    )


def key_from_row(row: Sequence[Any]) -> KeyRecord:
    """A ``KeyRecord`` from a row selected as ``KEY_COLUMNS``."""
    return KeyRecord(
        kid=row[0],
        alg=row[1],
        private_key_encrypted=bytes(row[2]),
        certificate_pem=row[3],
        created_at=float(row[4]),
        activates_at=float(row[5]),
        retires_at=None if row[6] is None else float(row[6]),
        unpublish_at=None if row[7] is None else float(row[7]),
    )


def revocation_params(record: RevocationRecord) -> tuple[Any, ...]:
    """The values of ``REVOCATION_COLUMNS`` for an insert, in order."""
    return (record.key, record.client_id, record.jti, record.issued_before, record.expires_at)


def revocation_from_row(row: Sequence[Any]) -> RevocationRecord:
    """A ``RevocationRecord`` from a row selected as ``REVOCATION_COLUMNS``."""
    return RevocationRecord(
        client_id=row[1],
        jti=row[2],
        issued_before=None if row[3] is None else float(row[3]),
        expires_at=float(row[4]),
    )
