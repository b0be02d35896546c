"""``swarm-oauth db``: the store's schema."""

from __future__ import annotations

from pathlib import Path

import click

from swarm_oauth.cli.options import fail, resolve_database_url, store_options
from swarm_oauth.secretfiles import SecretConfigError
from swarm_oauth.store import Store, StoreError, open_store, sqlite_path


class NoStore(StoreError):
    """Nothing here is a store a server has set up; the message names where it looked."""


def open_existing_store(data_dir: Path, database_url: str | None) -> Store:
    """The store a server created, its schema brought up to date; ``NoStore`` rather
    than a new empty one when there is none where the options point (only ``serve``
    creates a store)."""
    try:
        url = resolve_database_url(database_url)
    except SecretConfigError as exc:  # SWARM_OAUTH_DATABASE_URL_FILE names a bad file
        raise StoreError(str(exc)) from None
    path = sqlite_path(url, data_dir)
    advice = (
        "only `swarm-oauth serve` creates one: pass the server's --data-dir (or "
        "SWARM_OAUTH_DATA_DIR) or --database-url"
    )
    if path is not None and not path.is_file():
        raise NoStore(f"no store at {path.absolute()}: {advice}")
    store = open_store(url, data_dir)
    if not store.initialized():
        store.close()
        where = path.absolute() if path is not None else "the database at --database-url"
        raise NoStore(f"{where} holds no swarm-oauth store: {advice}")
    store.migrate()
    return store


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@store_options
def db_upgrade(data_dir: Path, database_url: str | None) -> None:
    """Apply schema migrations (servers also do this when they start)."""
    try:
        open_existing_store(data_dir, database_url)
    except StoreError as exc:
        fail(str(exc))
    click.echo("schema up to date")
