"""``swarm-oauth clients``: manage clients through the clients API, as its admin.

The API is found the way ``serve`` was told to listen (``SWARM_OAUTH_HOST`` and
``SWARM_OAUTH_PORT``) unless ``--url`` or ``SWARM_OAUTH_CLIENTS_URL`` says otherwise, and
the admin token where ``serve`` keeps it (``DATA_DIR/admin-token``) unless told.
"""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import httpx

from swarm_oauth.admin_client import JSON, AdminAPIError, AdminAPIUnreachable, AdminClient
from swarm_oauth.admin_token import ADMIN_TOKEN_FILENAME, resolve_admin_token
from swarm_oauth.cli.options import (
    LateOptionsGroup,
    admin_token_file_option,
    ca_bundle_option,
    data_dir_option,
    fail,
    setting,
)
from swarm_oauth.cli.output import Table, cell, fields, output_option, show
from swarm_oauth.identifiers import MAX_GRACE_SECONDS
from swarm_oauth.secretfiles import SecretConfigError
from swarm_oauth.urls import shown

T = TypeVar("T")

# Addresses a server listens on that a client cannot connect to as such.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def default_url(env: dict[str, str] | None = None) -> str:
    """Where ``serve`` listens by the same variables: ``SWARM_OAUTH_HOST`` (an
    any-address becomes loopback) and ``SWARM_OAUTH_PORT``, else ``127.0.0.1:8080``."""
    env = dict(os.environ) if env is None else env
    host = env.get("SWARM_OAUTH_HOST", "127.0.0.1").strip()
    host = _ANY_ADDRESS.get(host, host)
    port = env.get("SWARM_OAUTH_PORT", "8080").strip() or "8080"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@click.group(cls=LateOptionsGroup)
@setting(
    "--url",
    env="CLIENTS_URL",
    help="Root URL of the clients API. Default: http://HOST:PORT from SWARM_OAUTH_HOST and "
    "SWARM_OAUTH_PORT, as serve listens (127.0.0.1:8080).",
)
@admin_token_file_option(
    "Default: SWARM_OAUTH_ADMIN_TOKEN(_FILE), else DATA_DIR/admin-token as serve keeps it."
)
@data_dir_option("The server's data dir, where its admin token is found.")
@ca_bundle_option("PEM file of the CAs to check an https --url against. Default: the system's.")
def clients(
    url: str | None, admin_token_file: Path | None, data_dir: Path, ca_bundle: Path | None
) -> None:
    """Manage clients through the clients API (options may follow the subcommand too)."""


def _api(ctx: click.Context) -> AdminClient:
    """The admin client for the options given before or after the subcommand."""
    assert ctx.parent is not None
    options = ctx.parent.params
    data_dir: Path = options["data_dir"]
    ca_bundle: Path | None = options["ca_bundle"]
    try:
        token = resolve_admin_token(options["admin_token_file"], data_dir / ADMIN_TOKEN_FILENAME)
        api = AdminClient(options["url"] or default_url(), token, ca_bundle=ca_bundle)
    except SecretConfigError as exc:
        fail(str(exc))
    except ssl.SSLError as exc:
        fail(f"--ca-bundle {ca_bundle}: not a PEM file of CA certificates ({exc.reason})")
    except httpx.InvalidURL as exc:
        fail(f"--url: {exc}")
    return ctx.with_resource(api)


def _request(ctx: click.Context, call: Callable[[AdminClient], T]) -> T:
    """Run ``call`` on the API; unreachable is a usage error (2), a refusal exits 1."""
    api = _api(ctx)
    try:
        return call(api)
    except AdminAPIUnreachable as exc:
        fail(f"cannot reach the clients API at {shown(api.base_url)} (--url): {shown(str(exc))}")
    except AdminAPIError as exc:
        _refuse(f"the clients API answered {exc.status}: {exc.reason}")


def _refuse(message: str) -> NoReturn:
    """The API said no: ``error: message`` on stderr, exit code 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _show_record(output: str | None, record: JSON) -> None:
    show(output, record, fields(record))


def grants(verb: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--scope`` and ``--audience``, each repeatable: what a client may ask for."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn = click.option(
            "--audience", "audiences", multiple=True, help=f"{verb} audiences; repeat for each."
        )(fn)
        return click.option(
            "--scope", "scopes", multiple=True, help=f"{verb} scopes; repeat for each."
        )(fn)

    return decorate


@clients.command("add")
@click.argument("client_id")
@grants("Its")
@output_option
@click.pass_context
def clients_add(
    ctx: click.Context,
    client_id: str,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    output: str | None,
) -> None:
    """Add a client and print its secret (shown this once)."""
    added = _request(ctx, lambda api: api.add(client_id, scopes, audiences))
    if added is None:
        _refuse(f"client {client_id!r} already exists (`clients rotate` gives it a new secret)")
    _show_record(output, added)


@clients.command("remove")
@click.argument("client_id")
@output_option
@click.pass_context
def clients_remove(ctx: click.Context, client_id: str, output: str | None) -> None:
    """Remove a client."""
    if not _request(ctx, lambda api: api.remove(client_id)):
        _refuse(f"no client {client_id!r}")
    show(output, {"client_id": client_id, "removed": True}, f"removed client {client_id}")


@clients.command("rotate")
@click.argument("client_id")
@click.option(
    "--grace-seconds",
    type=click.IntRange(0, MAX_GRACE_SECONDS),
    default=0,
    show_default=True,
    help="How long the old secret keeps working (at most 30 days); 0 stops it at once.",
)
@output_option
@click.pass_context
def clients_rotate(
    ctx: click.Context, client_id: str, grace_seconds: int, output: str | None
) -> None:
    """Give a client a new secret and print it."""
    rotated = _request(ctx, lambda api: api.rotate(client_id, grace_seconds))
    if rotated is None:
        _refuse(f"no client {client_id!r}")
    _show_record(output, rotated)


@clients.command("revoke-tokens")
@click.argument("client_id")
@output_option
@click.pass_context
def clients_revoke_tokens(ctx: click.Context, client_id: str, output: str | None) -> None:
    """Revoke every token issued to a client until now (with a leaked secret, rotate too)."""
    revoked = _request(ctx, lambda api: api.revoke_tokens(client_id))
    if revoked is None:
        _refuse(f"no client {client_id!r}")
    show(output, revoked, f"revoked the tokens of client {client_id} issued until now")


@clients.command("show")
@click.argument("client_id")
@output_option
@click.pass_context
def clients_show(ctx: click.Context, client_id: str, output: str | None) -> None:
    """Show one client (never its secret)."""
    record = _request(ctx, lambda api: api.get(client_id))
    if record is None:
        _refuse(f"no client {client_id!r}")
    _show_record(output, record)


@clients.command("update")
@click.argument("client_id")
@grants("The new")
@click.option("--no-scopes", is_flag=True, help="Take every scope away.")
@click.option("--no-audiences", is_flag=True, help="Take every audience away.")
@output_option
@click.pass_context
def clients_update(
    ctx: click.Context,
    client_id: str,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    no_scopes: bool,
    no_audiences: bool,
    output: str | None,
) -> None:
    """Replace a client's scopes and audiences (those given); its secret stays."""
    new: dict[str, list[str] | None] = {}
    for name, given, none in (
        ("scopes", scopes, no_scopes),
        ("audiences", audiences, no_audiences),
    ):
        if given and none:
            fail(f"--{name[:-1]} and --no-{name} say opposite things")
        new[name] = [] if none else list(given) or None
    if new["scopes"] is None and new["audiences"] is None:
        fail("nothing to update: give --scope, --audience, --no-scopes or --no-audiences")
    updated = _request(ctx, lambda api: api.update(client_id, new["scopes"], new["audiences"]))
    if updated is None:
        _refuse(f"no client {client_id!r}")
    _show_record(output, updated)


@clients.command("list")
@output_option
@click.pass_context
def clients_list(ctx: click.Context, output: str | None) -> None:
    """List every client (all pages of the API)."""
    records = _request(ctx, lambda api: api.list())
    rows = [
        (
            r.get("client_id"),
            cell(r.get("scopes")),
            cell(r.get("audiences")),
            r.get("secret_version"),
            r.get("updated_at"),
            (r.get("metadata") or {}).get("managed_by"),
        )
        for r in records
    ]
    table = Table(
        ("CLIENT ID", "SCOPES", "AUDIENCES", "SECRET VERSION", "UPDATED", "MANAGED BY"),
        rows,
        empty="no clients",
    )
    show(output, {"clients": records}, table, f"{len(records)} client(s)")
