"""``swarm-oauth registrar``: reconcile swarm services with OAuth clients, and serve the
swarm-listener receiver, status, health and metrics over HTTP.

``swarm-oauth registrar [OPTIONS]`` runs it; ``check-policy``, ``status`` and ``release``
are subcommands beside it, for the operator.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import httpx

from swarm_oauth.admin_token import resolve_admin_token
from swarm_oauth.cli.options import (
    admin_token_file_option,
    fail,
    host_option,
    log_level_option,
    port_option,
    setting,
)
from swarm_oauth.logs import configure_logging
from swarm_oauth.registrar.labels import DEFAULT_SELECTOR
from swarm_oauth.registrar.reconcile import DEFAULT_RESERVATION_SECONDS
from swarm_oauth.secretfiles import SecretConfigError, read_secret_file

log = logging.getLogger("swarm_oauth.registrar")

DEFAULT_URL = "http://127.0.0.1:8081"

policy_argument = click.argument("policy", type=click.Path(path_type=Path, dir_okay=False))


@click.group(invoke_without_command=True)
@host_option
@port_option(8081)
@setting(
    "--clients-url",
    env="CLIENTS_URL",
    help="Root of the clients API, e.g. http://oauth-clients:8080.",
)
@setting(
    "--token-url",
    env="TOKEN_URL",
    help="The token endpoint services are told to use, e.g. http://oauth-tokens:8080/api/token.",
)
@admin_token_file_option(
    "File holding the clients API's admin token. Default: SWARM_OAUTH_ADMIN_TOKEN."
)
@click.option(
    "--docker-host",
    envvar="DOCKER_HOST",
    show_envvar=True,
    help="Docker Engine URL. Default: the local socket.",
)
@setting(
    "--selector",
    env="SELECTOR",
    default=DEFAULT_SELECTOR,
    help="LABEL=VALUE (or LABEL) a service must carry to be managed.",
)
@setting(
    "--policy",
    env="POLICY_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The registration policy (YAML): which client ids, scopes and audiences services "
    "may have. Without it, own-stack client ids only and no label scopes or audiences.",
)
@setting(
    "--id-reservation-seconds",
    env="ID_RESERVATION_SECONDS",
    type=click.FloatRange(0),
    default=DEFAULT_RESERVATION_SECONDS,
    help="How long a removed service's client id stays reserved for its service name.",
)
@setting(
    "--notify-token-file",
    env="NOTIFY_TOKEN_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding a token that notifications and forced passes must carry "
    "(?token= or Authorization: Bearer). Default: none required.",
)
@setting(
    "--resync-seconds",
    env="RESYNC_SECONDS",
    type=click.FloatRange(1),
    default=60.0,
    help="Seconds between full passes over every service.",
)
@setting("--events/--no-events", env="EVENTS", default=True, help="Follow Docker's event stream.")
@log_level_option
@click.pass_context
def registrar(
    ctx: click.Context,
    host: str,
    port: int,
    clients_url: str | None,
    token_url: str | None,
    admin_token_file: Path | None,
    docker_host: str | None,
    selector: str,
    policy: Path | None,
    id_reservation_seconds: float,
    notify_token_file: Path | None,
    resync_seconds: float,
    events: bool,
    log_level: str,
) -> None:
    """Give every selected swarm service an OAuth client and its secret, and take them
    away when the service goes."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from swarm_oauth.registrar.labels import Selector
    from swarm_oauth.registrar.policy_file import PolicyError
    from swarm_oauth.registrar.ports import RegistrarError
    from swarm_oauth.registrar.runner import Registrar, RegistrarSettings

    configure_logging(log_level)
    missing = [
        f"--{n}" for n, v in (("clients-url", clients_url), ("token-url", token_url)) if not v
    ]
    if missing:
        fail(f"{' and '.join(missing)} required (or SWARM_OAUTH_CLIENTS_URL, _TOKEN_URL)")
    try:
        Selector.parse(selector)
        settings = RegistrarSettings(
            clients_url=str(clients_url),
            token_url=str(token_url),
            admin_token=resolve_admin_token(admin_token_file),
            docker_host=docker_host or None,
            selector=selector,
            resync_seconds=resync_seconds,
            events=events,
            policy_file=policy,
            reservation_seconds=id_reservation_seconds,
            notify_token=read_secret_file(notify_token_file) if notify_token_file else None,
        )
        runner = Registrar(settings)
    except (SecretConfigError, ValueError, RegistrarError, PolicyError) as exc:
        fail(str(exc))
    # SIGHUP: re-read the policy now. Installed before uvicorn, which leaves it alone.
    signal.signal(signal.SIGHUP, lambda *_: runner.reload())
    log.info(
        "starting registrar",
        extra={
            "clients_url": clients_url,
            "token_url": token_url,
            "selector": selector,
            "policy": str(policy) if policy else None,
            "resync_seconds": resync_seconds,
            "events": events,
            "notify_token": notify_token_file is not None,
        },
    )
    uvicorn.run(
        runner.app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
    )


@registrar.command("check-policy")
@policy_argument
def check_policy(policy: Path) -> None:
    """Check a registration policy file without running anything; exit 2 (with the line)
    when it is unusable."""
    from swarm_oauth.registrar.policy_file import PolicyError, load_policy

    try:
        loaded = load_policy(policy)
    except PolicyError as exc:
        fail(str(exc))
    click.echo(f"{policy}: {len(loaded.rules)} rule(s) and a default; the policy is usable")


url_option = setting(
    "--url", env="REGISTRAR_URL", default=DEFAULT_URL, help="The registrar's HTTP root."
)
token_option = admin_token_file_option(
    "Default: SWARM_OAUTH_ADMIN_TOKEN(_FILE), else ./data/admin-token."
)
output_option = click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    help="Default: a table on a terminal, JSON otherwise.",
)


def _ask(method: str, url: str, path: str, token_file: Path | None) -> Any:
    """One request to the registrar's API with the admin token; its JSON, or a clear exit."""
    try:
        token = resolve_admin_token(token_file, Path("data") / "admin-token")
    except SecretConfigError as exc:
        fail(str(exc))
    try:
        response = httpx.request(
            method, url.rstrip("/") + path, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        fail(f"cannot reach the registrar at {url}: {type(exc).__name__}: {exc}")
    try:
        body = response.json()
    except ValueError:
        fail(f"{url}{path} answered {response.status_code} without JSON: is --url right?")
    if response.status_code >= 400:
        reason = body.get("error_description") if isinstance(body, dict) else None
        click.echo(f"error: {response.status_code} {reason or body}", err=True)
        sys.exit(1)
    return body


@registrar.command("status")
@url_option
@token_option
@output_option
def status(url: str, admin_token_file: Path | None, output: str | None) -> None:
    """Every selected service: its client id, state, the reason for a refusal or conflict,
    its Docker secret and when it last converged."""
    services = _ask("GET", url, "/v1/services", admin_token_file)["services"]
    if (output or ("table" if sys.stdout.isatty() else "json")) == "json":
        click.echo(json.dumps(services, indent=2))
        return
    rows = [
        (
            s["service_name"],
            s["client_id"] or "-",
            s["state"],
            _ago(s["converged_at"]),
            s["reason"] or s["secret"] or "",
        )
        for s in services
    ]
    click.echo(_table(("SERVICE", "CLIENT", "STATE", "CONVERGED", "SECRET / REASON"), rows))


@registrar.command("release")
@click.argument("client_id")
@url_option
@token_option
def release(client_id: str, url: str, admin_token_file: Path | None) -> None:
    """Free a client id reserved for a removed service, before its reservation ends."""
    click.echo(json.dumps(_ask("DELETE", url, f"/v1/reservations/{client_id}", admin_token_file)))


def _ago(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    seconds = max(0, int(time.time() - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=False)]
    return "\n".join(
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )
