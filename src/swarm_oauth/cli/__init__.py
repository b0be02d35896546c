"""The ``swarm-oauth`` command: ``serve``, ``registrar``, ``keys``, ``db``, ``clients``,
``token``.

Each subcommand lives in a module of its own, imported only when it runs: ``serve`` never
pays for the Docker client, the registrar never loads the store, and a broken optional
part cannot break the others.
"""

from __future__ import annotations

import importlib
import logging
from typing import ClassVar

import click

from swarm_oauth import __version__


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    lazy: ClassVar[dict[str, str]] = {
        "serve": "swarm_oauth.cli.serve:serve",
        "registrar": "swarm_oauth.registrar.command:registrar",
        "keys": "swarm_oauth.cli.keys:keys",
        "db": "swarm_oauth.cli.db:db",
        "clients": "swarm_oauth.cli.clients:clients",
        "token": "swarm_oauth.cli.token:token",
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, _, attribute = self.lazy[name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="swarm-oauth")
def main() -> None:
    """OAuth 2.0 client-credentials identities for Docker Swarm services."""
    # The PostgreSQL pool warns of every failed connect on stderr, in its own words; the
    # command's one error line already says why (``serve`` sets the same level again).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
