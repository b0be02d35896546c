"""``swarm-oauth db``: the store's schema."""

from __future__ import annotations

from pathlib import Path

import click

from swarm_oauth.cli.options import fail, resolve_database_url, store_options
from swarm_oauth.store import Store, StoreError, open_store


def open_existing_store(data_dir: Path, database_url: str | None) -> Store:
    """The servers' store, its schema brought up to date."""
    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(resolve_database_url(database_url), data_dir)
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
