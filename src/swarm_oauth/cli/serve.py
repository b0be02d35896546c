"""``swarm-oauth serve``: the token server."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from swarm_oauth.admin_token import ENV_ADMIN_TOKEN
from swarm_oauth.cli.options import (
    ENV_DATABASE_URL,
    admin_token_file_option,
    fail,
    host_option,
    issuer_option,
    listener_options,
    log_level_option,
    master_key_option,
    port_option,
    resolve_database_url,
    setting,
    signing_alg_option,
    store_options,
    token_lifetime_option,
)
from swarm_oauth.config import ROLES, ServerSettings
from swarm_oauth.keys import MasterKeyError
from swarm_oauth.logs import configure_logging
from swarm_oauth.secretfiles import SecretConfigError, secret_from_env, withhold_from_children
from swarm_oauth.serving.limits import HttpLimits, TlsFiles
from swarm_oauth.store import StoreError

log = logging.getLogger("swarm_oauth.cli")


@click.command()
@setting(
    "--role",
    env="ROLE",
    type=click.Choice(ROLES),
    default="all",
    help="clients: the admin API; tokens: the token endpoint and keys; all: both.",
)
@host_option
@port_option(8080)
@store_options
@master_key_option
@issuer_option("The iss of tokens and the base of metadata URLs. Default: http(s)://HOST:PORT.")
@admin_token_file_option(
    "File holding the admin API token. Default: SWARM_OAUTH_ADMIN_TOKEN, "
    "else DATA_DIR/admin-token, generated."
)
@signing_alg_option(
    "--signing-alg", "Algorithm of the signing key the server creates when the store has none."
)
@token_lifetime_option("Seconds an access token is valid.")
@setting(
    "--workers",
    env="WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    help="Server processes on one port.",
)
@listener_options
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
    limits: HttpLimits,
    tls: TlsFiles | None,
    log_level: str,
) -> None:
    """Run the token server."""
    from swarm_oauth.api.app import WorkerApp, create_app
    from swarm_oauth.runtime import ENV_MASTER_KEY, Runtime
    from swarm_oauth.serving.run import serve as serve_http

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
            tls=tls is not None,
            master_key_file=master_key_file,
            admin_token_file=admin_token_file,
            database_url=resolve_database_url(database_url),
            # Secrets given as values in the environment travel in the settings instead,
            # which reach worker processes through a pipe; the variables are dropped.
            master_key=None if master_key_file else secret_from_env(ENV_MASTER_KEY),
            admin_token=None if admin_token_file else secret_from_env(ENV_ADMIN_TOKEN),
        )
        withhold_from_children(ENV_DATABASE_URL, ENV_MASTER_KEY, ENV_ADMIN_TOKEN)
        # Prepared once here, so workers find the files and keys already in place.
        runtime = Runtime.open(settings)
    except (SecretConfigError, MasterKeyError, StoreError, OSError) as exc:
        fail(str(exc))
    log.info(
        "starting",
        extra={
            "role": role,
            "issuer": settings.issuer_url,
            "workers": workers,
            "data_dir": str(data_dir),
        },
    )
    if workers == 1:
        serve_http(create_app(runtime), host=host, port=port, limits=limits, tls=tls)
        return
    runtime.close()
    serve_http(WorkerApp(settings), host=host, port=port, limits=limits, tls=tls, workers=workers)
