"""``swarm-oauth registrar``: reconcile swarm services with OAuth clients, and serve the
swarm-listener receiver, health and metrics over HTTP."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from swarm_oauth.admin_token import resolve_admin_token
from swarm_oauth.cli.options import (
    admin_token_file_option,
    host_option,
    log_level_option,
    port_option,
)
from swarm_oauth.logs import configure_logging
from swarm_oauth.registrar.policy import DEFAULT_SELECTOR
from swarm_oauth.secretfiles import SecretConfigError

log = logging.getLogger("swarm_oauth.registrar")


@click.command()
@host_option
@port_option(8081)
@click.option(
    "--clients-url",
    required=True,
    envvar="SWARM_OAUTH_CLIENTS_URL",
    show_envvar=True,
    help="Root of the clients API, e.g. http://oauth-clients:8080.",
)
@click.option(
    "--token-url",
    required=True,
    envvar="SWARM_OAUTH_TOKEN_URL",
    show_envvar=True,
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
@click.option(
    "--selector",
    default=DEFAULT_SELECTOR,
    envvar="SWARM_OAUTH_SELECTOR",
    show_default=True,
    show_envvar=True,
    help="LABEL=VALUE (or LABEL) a service must carry to be managed.",
)
@click.option(
    "--resync-seconds",
    type=click.FloatRange(1),
    default=60.0,
    envvar="SWARM_OAUTH_RESYNC_SECONDS",
    show_default=True,
    show_envvar=True,
    help="Seconds between full passes over every service.",
)
@click.option(
    "--events/--no-events",
    default=True,
    envvar="SWARM_OAUTH_EVENTS",
    show_default=True,
    show_envvar=True,
    help="Follow the Docker service event stream.",
)
@log_level_option
def registrar(
    host: str,
    port: int,
    clients_url: str,
    token_url: str,
    admin_token_file: Path | None,
    docker_host: str | None,
    selector: str,
    resync_seconds: float,
    events: bool,
    log_level: str,
) -> None:
    """Give every selected swarm service an OAuth client and its secret, and take them
    away when the service goes."""
    import uvicorn

    from swarm_oauth.registrar.policy import Selector
    from swarm_oauth.registrar.ports import RegistrarError
    from swarm_oauth.registrar.runner import Registrar, RegistrarSettings

    configure_logging(log_level)
    try:
        Selector.parse(selector)
        settings = RegistrarSettings(
            clients_url=clients_url,
            token_url=token_url,
            admin_token=resolve_admin_token(admin_token_file),
            docker_host=docker_host or None,
            selector=selector,
            resync_seconds=resync_seconds,
            events=events,
        )
        registrar = Registrar(settings)
    except (SecretConfigError, ValueError, RegistrarError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    log.info(
        "starting registrar",
        extra={
            "clients_url": clients_url,
            "token_url": token_url,
            "selector": selector,
            "resync_seconds": resync_seconds,
            "events": events,
        },
    )
    uvicorn.run(
        registrar.app,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
    )
