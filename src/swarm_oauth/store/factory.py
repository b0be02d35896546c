"""Open the store named by a database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from swarm_oauth.store.base import Store, StoreError
from swarm_oauth.store.sqlite import SQLiteStore

SQLITE_FILENAME = "swarm-oauth.db"


def open_store(database_url: str | None, data_dir: Path) -> Store:
    """The store for ``database_url``; None means SQLite in ``data_dir``.

    Accepts ``sqlite:///relative/or/absolute/path`` and ``postgresql://...``.
    """
    if not database_url:
        return SQLiteStore(data_dir / SQLITE_FILENAME)
    scheme = urlsplit(database_url).scheme
    if scheme == "sqlite":
        # As SQLAlchemy spells it: sqlite:///relative.db, sqlite:////absolute/path.db.
        path = database_url.removeprefix("sqlite:///")
        if path == database_url or not path:
            raise StoreError("a sqlite URL reads sqlite:///path/to/file.db")
        return SQLiteStore(Path(path))
    if scheme in ("postgres", "postgresql"):
        from swarm_oauth.store.postgres import PostgresStore

        return PostgresStore(database_url)
    raise StoreError(f"unsupported database URL scheme {scheme!r}: use sqlite or postgresql")
