"""Open the store named by a database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from swarm_oauth.store.base import Store, StoreError
from swarm_oauth.store.sqlite import SQLiteStore

SQLITE_FILENAME = "swarm-oauth.db"


def sqlite_path(database_url: str | None, data_dir: Path) -> Path | None:
    """The SQLite file ``database_url`` names (None: the one in ``data_dir``); None when
    the URL names another kind of store."""
    if not database_url:
        return data_dir / SQLITE_FILENAME
    if _scheme(database_url) != "sqlite":
        return None
    # As SQLAlchemy spells it: sqlite:///relative.db, sqlite:////absolute/path.db.
    path = database_url.removeprefix("sqlite:///")
    if path == database_url or not path:
        raise StoreError("a sqlite URL reads sqlite:///path/to/file.db")
    return Path(path)


def open_store(database_url: str | None, data_dir: Path) -> Store:
    """The store for ``database_url``; None means SQLite in ``data_dir``.

    Accepts ``sqlite:///relative/or/absolute/path`` and ``postgresql://...``.
    """
    path = sqlite_path(database_url, data_dir)
    if path is not None:
        return SQLiteStore(path)
    assert database_url is not None  # sqlite_path answers for None
    scheme = _scheme(database_url)
    if scheme in ("postgres", "postgresql"):
        from swarm_oauth.store.postgres import PostgresStore

        return PostgresStore(database_url)
    raise StoreError(f"unsupported database URL scheme {scheme!r}: use sqlite or postgresql")


def _scheme(database_url: str) -> str:
    try:
        return urlsplit(database_url).scheme
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"; the URL itself may hold a password
        raise StoreError(f"the database URL is malformed: {exc}") from None
