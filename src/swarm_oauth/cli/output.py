"""How commands print what they found: ``--output table`` for a person, ``--output json``
for a program. Without the option, a terminal gets the table and a pipe the JSON, so
``swarm-oauth clients list | jq`` and a glance at the screen both work.

A command builds its JSON document and, from the same data, the tables (and lines) a
person reads; ``show`` prints the one asked for.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import click
from tabulate import tabulate

from swarm_oauth.cli.options import Decorator, setting

OUTPUTS = ("table", "json")


def output_option(fn: Any) -> Any:
    """``--output table|json`` (``-o``, ``SWARM_OAUTH_OUTPUT``); default: table on a
    terminal, JSON otherwise."""
    option: Decorator = setting(
        "--output",
        "-o",
        env="OUTPUT",
        type=click.Choice(OUTPUTS),
        default=None,
        show_default=False,
        help="table or json. Default: table when standard output is a terminal, else json.",
    )
    return option(fn)


def resolve_output(output: str | None) -> str:
    """The format to print in: the one asked for, else by what standard output is."""
    if output is not None:
        return output
    return "table" if sys.stdout.isatty() else "json"


@dataclass(frozen=True)
class Table:
    """Rows under a header; ``empty`` is printed instead when there are no rows."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    empty: str = "(none)"
    title: str | None = None

    def render(self) -> str:
        """The table as aligned text (a missing value shows as ``-``)."""
        body = (
            tabulate(self.rows, headers=list(self.headers), tablefmt="simple", missingval="-")
            if self.rows
            else self.empty
        )
        return f"{self.title}\n{body}" if self.title else body


def fields(record: dict[str, Any]) -> Table:
    """One record as a two-column table of its fields (lists joined by spaces)."""
    return Table(("FIELD", "VALUE"), [(name, cell(value)) for name, value in record.items()])


def cell(value: Any) -> Any:
    """A JSON value as a table cell: lists joined with spaces, objects as compact JSON."""
    if isinstance(value, list | tuple):
        return " ".join(str(item) for item in value) if value else None
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"), sort_keys=True) if value else None
    return value


def show(output: str | None, document: Any, *blocks: Table | str) -> None:
    """Print ``document`` as indented JSON, or ``blocks`` (tables and plain lines)
    separated by blank lines, according to ``output`` (see ``resolve_output``)."""
    if resolve_output(output) == "json":
        click.echo(json.dumps(document, indent=2))
        return
    click.echo("\n\n".join(b.render() if isinstance(b, Table) else b for b in blocks))
