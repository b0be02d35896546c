"""The ``swarm-oauth`` command: ``serve``, ``registrar``, ``keys``, ``db``, ``clients``."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, NoReturn, TypeVar
from urllib.parse import quote

import click

from swarm_oauth import __version__
from swarm_oauth.cli_options import (
    admin_token_file_option,
    host_option,
    log_level_option,
    port_option,
)
from swarm_oauth.config import ROLES, SETTINGS_ENV, ServerSettings
from swarm_oauth.keys import (
    ALGORITHMS,
    MasterKey,
    MasterKeyError,
    check_master_key,
    retire_key,
    rotate_keys,
)
from swarm_oauth.logs import configure_logging
from swarm_oauth.secretfiles import SecretConfigError, read_secret_file, secret_from_env
from swarm_oauth.store import KeyRecord, Store, StoreError

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("swarm_oauth.cli")


class LazyGroup(click.Group):
    """Imports a subcommand's module only when it runs, so ``serve`` never pays for the
    registrar's Docker client and a broken optional part cannot break the others."""

    lazy: ClassVar[dict[str, str]] = {"registrar": "swarm_oauth.registrar.command:registrar"}

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


def store_options(fn: F) -> F:
    """Options that locate the store, shared by several commands."""
    fn = click.option(
        "--database-url",
        envvar="SWARM_OAUTH_DATABASE_URL",
        show_envvar=True,
        help="sqlite:///path or postgresql://...; also SWARM_OAUTH_DATABASE_URL_FILE."
        " Default: SQLite in the data dir.",
    )(fn)
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=Path("data"),
        envvar="SWARM_OAUTH_DATA_DIR",
        show_default=True,
        show_envvar=True,
        help="Where the embedded SQLite store and generated secrets live.",
    )(fn)


master_key_option = click.option(
    "--master-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="SWARM_OAUTH_MASTER_KEY_FILE",
    show_envvar=True,
    help="File holding the master key (base64 of 32 bytes). Default: "
    "SWARM_OAUTH_MASTER_KEY, else DATA_DIR/master.key.",
)


def _database_url(flag: str | None) -> str | None:
    return flag or secret_from_env("SWARM_OAUTH_DATABASE_URL")


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


@main.command()
@click.option(
    "--role",
    type=click.Choice(ROLES),
    default="all",
    envvar="SWARM_OAUTH_ROLE",
    show_default=True,
    show_envvar=True,
    help="clients: the admin API; tokens: the token endpoint and keys; all: both.",
)
@host_option
@port_option(8080)
@store_options
@master_key_option
@click.option(
    "--issuer",
    envvar="SWARM_OAUTH_ISSUER",
    show_envvar=True,
    help="The iss of tokens and the base of metadata URLs. Default: http://HOST:PORT.",
)
@admin_token_file_option(
    "File holding the admin API token. Default: SWARM_OAUTH_ADMIN_TOKEN, "
    "else DATA_DIR/admin-token, generated."
)
@click.option(
    "--signing-alg",
    type=click.Choice(ALGORITHMS),
    default="ES256",
    envvar="SWARM_OAUTH_SIGNING_ALG",
    show_default=True,
    show_envvar=True,
    help="Algorithm of the first signing key (and of keys rotate's default).",
)
@click.option(
    "--token-lifetime",
    type=click.IntRange(1, 86400),
    default=900,
    envvar="SWARM_OAUTH_TOKEN_LIFETIME",
    show_default=True,
    show_envvar=True,
    help="Seconds an access token is valid.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    envvar="SWARM_OAUTH_WORKERS",
    show_default=True,
    show_envvar=True,
    help="Server processes on one port.",
)
@log_level_option
def serve(
    role: str,
    host: str,
    port: int,
    data_dir: Path,
    database_url: str | None,
    master_key_file: Path | None,
    issuer: str | None,
    admin_token_file: Path | None,
    signing_alg: str,
    token_lifetime: int,
    workers: int,
    log_level: str,
) -> None:
    """Run the token server."""
    import uvicorn

    from swarm_oauth.api.app import create_app
    from swarm_oauth.runtime import Runtime

    configure_logging(log_level)
    try:
        settings = ServerSettings(
            role=role,  # type: ignore[arg-type]
            host=host,
            port=port,
            data_dir=data_dir,
            issuer=issuer,
            signing_alg=signing_alg,
            token_lifetime=token_lifetime,
            workers=workers,
            log_level=log_level,
            master_key_file=master_key_file,
            admin_token_file=admin_token_file,
            database_url=_database_url(database_url),
        )
        # Prepared once here, so workers find the files and keys already in place.
        runtime = Runtime.open(settings)
    except (SecretConfigError, MasterKeyError, StoreError, OSError) as exc:
        _fail(str(exc))
    log.info(
        "starting",
        extra={
            "role": role,
            "issuer": settings.issuer_url,
            "workers": workers,
            "data_dir": str(data_dir),
        },
    )
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": None,
        "access_log": False,
        # Nothing reads X-Forwarded-* here; the middleware would cost every request.
        "proxy_headers": False,
        "server_header": False,
    }
    if workers == 1:
        uvicorn.run(create_app(runtime), **options)
        return
    runtime.close()
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run("swarm_oauth.api.app:app_from_env", factory=True, workers=workers, **options)


@main.group()
def keys() -> None:
    """Inspect, rotate and retire signing keys (works on the store directly)."""


def _open_store(data_dir: Path, database_url: str | None) -> Store:
    from swarm_oauth.store import open_store

    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(_database_url(database_url), data_dir)
    store.migrate()
    return store


def _existing_master_key(store: Store, data_dir: Path, master_key_file: Path | None) -> MasterKey:
    """The servers' master key, proven to open the published keys; never a new one."""
    from swarm_oauth.runtime import load_master_key

    settings = ServerSettings(data_dir=data_dir, master_key_file=master_key_file)
    master = load_master_key(settings, create=False)
    check_master_key(store, master)
    return master


def _echo_key(record: KeyRecord) -> None:
    click.echo(
        json.dumps(
            {
                "kid": record.kid,
                "alg": record.alg,
                "activates_at": record.activates_at,
                "retires_at": record.retires_at,
                "unpublish_at": record.unpublish_at,
            }
        )
    )


@keys.command("rotate")
@store_options
@master_key_option
@click.option("--alg", type=click.Choice(ALGORITHMS), default="ES256", show_default=True)
@click.option("--issuer", default="swarm-oauth", help="Organisation name in the certificate.")
@click.option(
    "--publish-ahead",
    type=click.FloatRange(0),
    default=300.0,
    show_default=True,
    help="Seconds the new key is published before it signs, so verifiers that "
    "cache the JWKS learn it first.",
)
@click.option(
    "--token-lifetime",
    type=click.IntRange(1, 86400),
    default=900,
    envvar="SWARM_OAUTH_TOKEN_LIFETIME",
    show_default=True,
    show_envvar=True,
    help="The servers' token lifetime: old keys stay published this long after they stop "
    "signing (the servers also never issue a token that outlives its key's publication).",
)
def keys_rotate(
    data_dir: Path,
    database_url: str | None,
    master_key_file: Path | None,
    alg: str,
    issuer: str,
    publish_ahead: float,
    token_lifetime: int,
) -> None:
    """Add a signing key and retire the current ones when it activates."""
    try:
        store = _open_store(data_dir, database_url)
        master = _existing_master_key(store, data_dir, master_key_file)
        record = rotate_keys(
            store,
            master,
            alg=alg,
            issuer=issuer,
            now=time.time(),
            publish_ahead=publish_ahead,
            token_lifetime=token_lifetime,
        )
    except (SecretConfigError, MasterKeyError, StoreError) as exc:
        _fail(str(exc))
    _echo_key(record)


@keys.command("retire")
@store_options
@click.argument("kid")
def keys_retire(data_dir: Path, database_url: str | None, kid: str) -> None:
    """Withdraw a key at once (e.g. compromised): it stops signing and leaves the JWKS,
    so the tokens it signed no longer validate. Rotate first so another key signs."""
    try:
        store = _open_store(data_dir, database_url)
        now = time.time()
        published = {r.kid: r for r in store.list_keys()}
        if kid not in published:
            _fail(f"no published key {kid!r} (see `keys list`)")
        others = [r for r in published.values() if r.kid != kid and (r.retires_at or now + 1) > now]
        if not others:
            _fail(
                "that is the only key that signs or will: run `keys rotate --publish-ahead 0` first"
            )
        retire_key(store, kid, now)
    except StoreError as exc:
        _fail(str(exc))
    click.echo(json.dumps({"kid": kid, "retired": True}))


@keys.command("list")
@store_options
def keys_list(data_dir: Path, database_url: str | None) -> None:
    """The published keys and when each signs, retires and leaves the JWKS."""
    try:
        records = _open_store(data_dir, database_url).list_keys()
    except StoreError as exc:
        _fail(str(exc))
    for record in records:
        _echo_key(record)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@store_options
def db_upgrade(data_dir: Path, database_url: str | None) -> None:
    """Apply schema migrations (servers also do this when they start)."""
    try:
        _open_store(data_dir, database_url)
    except StoreError as exc:
        _fail(str(exc))
    click.echo("schema up to date")


@main.group()
@click.option(
    "--url",
    default="http://127.0.0.1:8080",
    envvar="SWARM_OAUTH_CLIENTS_URL",
    show_default=True,
    show_envvar=True,
    help="Root URL of the clients API.",
)
@admin_token_file_option("Default: SWARM_OAUTH_ADMIN_TOKEN, else ./data/admin-token.")
@click.pass_context
def clients(ctx: click.Context, url: str, admin_token_file: Path | None) -> None:
    """Manage clients through the clients API."""
    try:
        token = (
            read_secret_file(admin_token_file)
            if admin_token_file
            else secret_from_env("SWARM_OAUTH_ADMIN_TOKEN")
            or read_secret_file(Path("data/admin-token"))
        )
    except SecretConfigError as exc:
        _fail(str(exc))
    ctx.obj = (url.rstrip("/"), token)


def _call(ctx: click.Context, method: str, path: str, body: dict[str, Any] | None = None) -> None:
    import httpx

    url, token = ctx.obj
    try:
        response = httpx.request(
            method, url + path, json=body, timeout=10, headers={"Authorization": f"Bearer {token}"}
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {url}: {type(exc).__name__}")
    try:
        click.echo(json.dumps(response.json(), indent=2))
    except ValueError:  # not the clients API (a proxy's page, a wrong URL)
        _fail(f"{url}{path} answered {response.status_code} without JSON: is --url right?")
    if response.status_code >= 400:
        sys.exit(1)


@clients.command("add")
@click.argument("client_id")
@click.option("--scope", "scopes", multiple=True, help="Repeat for each scope.")
@click.option("--audience", "audiences", multiple=True, help="Repeat for each audience.")
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


@clients.command("show")
@click.argument("client_id")
@click.pass_context
def clients_show(ctx: click.Context, client_id: str) -> None:
    """Show one client (never its secret)."""
    _call(ctx, "GET", f"/api/clients/{quote(client_id, safe='')}")


@clients.command("update")
@click.argument("client_id")
@click.option("--scope", "scopes", multiple=True, help="The new scopes; repeat for each.")
@click.option("--audience", "audiences", multiple=True, help="The new audiences; repeat.")
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
