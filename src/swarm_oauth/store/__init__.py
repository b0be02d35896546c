"""Stores for clients, keys and revocations: SQLite (embedded default) and PostgreSQL."""

from swarm_oauth.store.base import (
    Change,
    ChangeBatch,
    ClientExists,
    ClientRecord,
    KeyRecord,
    RevocationRecord,
    Store,
    StoreError,
    StoreRejected,
    StoreUnavailable,
)
from swarm_oauth.store.factory import open_store, sqlite_path

__all__ = [
    "Change",
    "ChangeBatch",
    "ClientExists",
    "ClientRecord",
    "KeyRecord",
    "RevocationRecord",
    "Store",
    "StoreError",
    "StoreRejected",
    "StoreUnavailable",
    "open_store",
    "sqlite_path",
]
