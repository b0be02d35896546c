"""``swarm-oauth clients``: manage clients through the clients API, as its admin."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from swarm_oauth.admin_client import AdminAPIUnreachable, AdminClient
from swarm_oauth.admin_token import ADMIN_TOKEN_FILENAME, resolve_admin_token
from swarm_oauth.cli.options import DEFAULT_DATA_DIR, admin_token_file_option, fail, setting
from swarm_oauth.secretfiles import SecretConfigError


@click.group()
@setting(
    "--url", env="CLIENTS_URL", default="http://127.0.0.1:8080", help="Root URL of the clients API."
)
@admin_token_file_option("Default: SWARM_OAUTH_ADMIN_TOKEN, else ./data/admin-token.")
@click.pass_context
def clients(ctx: click.Context, url: str, admin_token_file: Path | None) -> None:
    """Manage clients through the clients API."""
    try:
        token = resolve_admin_token(admin_token_file, DEFAULT_DATA_DIR / ADMIN_TOKEN_FILENAME)
    except SecretConfigError as exc:
        fail(str(exc))
    ctx.obj = ctx.with_resource(AdminClient(url, token))


def _call(ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None) -> None:
    """Send one request with the context's ``AdminClient`` and print the answer's JSON."""
    api: AdminClient = ctx.obj
    try:
        response = api.send(method, path, json=body)
    except AdminAPIUnreachable as exc:
        fail(f"cannot reach {api.base_url}: {exc}")
    try:
        click.echo(json.dumps(response.json(), indent=2))
    except ValueError:  # not the clients API (a proxy's page, a wrong URL)
        fail(f"{api.base_url}{path} answered {response.status_code} without JSON: is --url right?")
    if response.status_code >= 400:
        sys.exit(1)


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
@click.pass_context
def clients_add(
    ctx: click.Context, client_id: str, scopes: tuple[str, ...], audiences: tuple[str, ...]
) -> None:
    """Add a client and print its secret (shown this once)."""
    _call(
        ctx,
        "POST",
        "/api/clients/add",
        {"client_id": client_id, "scopes": list(scopes), "audiences": list(audiences)},
    )


@clients.command("remove")
@click.argument("client_id")
@click.pass_context
def clients_remove(ctx: click.Context, client_id: str) -> None:
    """Remove a client."""
    _call(ctx, "POST", "/api/clients/remove", {"client_id": client_id})


@clients.command("rotate")
@click.argument("client_id")
@click.option("--grace-seconds", type=click.IntRange(0), default=0, show_default=True)
@click.pass_context
def clients_rotate(ctx: click.Context, client_id: str, grace_seconds: int) -> None:
    """Give a client a new secret and print it."""
    _call(
        ctx, "POST", "/api/clients/rotate", {"client_id": client_id, "grace_seconds": grace_seconds}
    )


@clients.command("revoke-tokens")
@click.argument("client_id")
@click.pass_context
def clients_revoke_tokens(ctx: click.Context, client_id: str) -> None:
    """Revoke every token issued to a client until now (with a leaked secret, rotate too)."""
    _call(ctx, "POST", "/api/clients/revoke-tokens", {"client_id": client_id})


@clients.command("show")
@click.argument("client_id")
@click.pass_context
def clients_show(ctx: click.Context, client_id: str) -> None:
    """Show one client (never its secret)."""
    _call(ctx, "GET", f"/api/clients/{quote(client_id, safe='')}")


@clients.command("update")
@click.argument("client_id")
@grants("The new")
@click.pass_context
def clients_update(
    ctx: click.Context, client_id: str, scopes: tuple[str, ...], audiences: tuple[str, ...]
) -> None:
    """Replace a client's scopes and audiences (those given); its secret stays."""
    body: dict[str, Any] = {"client_id": client_id}
    if scopes:
        body["scopes"] = list(scopes)
    if audiences:
        body["audiences"] = list(audiences)
    _call(ctx, "POST", "/api/clients/update", body)


@clients.command("list")
@click.pass_context
def clients_list(ctx: click.Context) -> None:
    """List clients."""
    _call(ctx, "GET", "/api/clients")
