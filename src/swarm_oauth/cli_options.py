"""Click options that more than one command takes; kept light, as the registrar's command
is loaded lazily."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

host_option = click.option(
    "--host", default="127.0.0.1", envvar="SWARM_OAUTH_HOST", show_default=True, show_envvar=True
)

log_level_option = click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    envvar="SWARM_OAUTH_LOG_LEVEL",
    show_default=True,
    show_envvar=True,
)


def port_option(default: int) -> Decorator:
    """``--port`` / ``SWARM_OAUTH_PORT`` with this command's default."""
    return click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=default,
        envvar="SWARM_OAUTH_PORT",
        show_default=True,
        show_envvar=True,
    )


def admin_token_file_option(help: str) -> Decorator:
    """``--admin-token-file`` / ``SWARM_OAUTH_ADMIN_TOKEN_FILE``; what the default is
    differs by command, hence ``help``."""
    return click.option(
        "--admin-token-file",
        type=click.Path(path_type=Path, dir_okay=False),
        envvar="SWARM_OAUTH_ADMIN_TOKEN_FILE",
        show_envvar=True,
        help=help,
    )
