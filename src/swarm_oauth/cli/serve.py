"""``swarm-oauth serve``: the token server."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import click

from swarm_oauth.admin_token import ENV_ADMIN_TOKEN
from swarm_oauth.cli.options import (
    ENV_DATABASE_URL,
    admin_token_file_option,
    duration_setting,
    fail,
    host_option,
    issuer_option,
    listener_options,
    log_format_option,
    log_level_option,
    master_key_option,
    port_option,
    publish_ahead_option,
    resolve_database_url,
    setting,
    signing_alg_option,
    store_options,
    token_lifetime_option,
    unpublish_margin_option,
)
from swarm_oauth.config import ROLES, ServerSettings
from swarm_oauth.cpus import usable_cpus
from swarm_oauth.keys.rotation import DEFAULT_ROTATION_INTERVAL_SECONDS
from swarm_oauth.logs import configure_logging
from swarm_oauth.secretfiles import secret_from_env, withhold_from_children
from swarm_oauth.serving.limits import HttpLimits, TlsFiles

log = logging.getLogger("swarm_oauth.cli")
# Addresses that listen on every interface: no URL for a client to use.
ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})

MAX_WORKERS = 64


def worker_count(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """``--workers``: a number, or ``auto`` for one per CPU this process may use (its
    affinity, capped by a container's CPU quota)."""
    if value.strip().lower() == "auto":
        return min(usable_cpus(), MAX_WORKERS)
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_WORKERS:
        raise click.BadParameter(f"{value!r} is neither auto nor 1 to {MAX_WORKERS}", ctx, param)
    return count


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
    "--signing-alg",
    "Algorithm of the signing keys the server creates: the first, and each automatic rotation's.",
)
@token_lifetime_option("Seconds an access token is valid.")
@duration_setting(
    "--key-rotation-interval",
    env="KEY_ROTATION_INTERVAL",
    default=DEFAULT_ROTATION_INTERVAL_SECONDS,
    help="Rotate the signing key once it has signed this long (0: never by itself).",
)
@publish_ahead_option("--key-publish-ahead")
@unpublish_margin_option("--key-unpublish-margin")
@setting(
    "--workers",
    env="WORKERS",
    default="1",
    metavar="N|auto",
    callback=worker_count,
    help=f"Server processes on one port, 1 to {MAX_WORKERS}; auto: one per usable CPU.",
)
@listener_options
@log_level_option
@log_format_option
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
    key_rotation_interval: float,
    key_publish_ahead: float,
    key_unpublish_margin: float,
    workers: int,
    limits: HttpLimits,
    tls: TlsFiles | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the token server."""
    from swarm_oauth.api import multiprocess
    from swarm_oauth.api.app import WorkerApp, create_app
    from swarm_oauth.runtime import ENV_MASTER_KEY, STARTUP_ERRORS, Runtime, with_secrets_read
    from swarm_oauth.serving.run import ListenError, WorkerStartError, listening_socket
    from swarm_oauth.serving.run import serve as serve_http

    configure_logging(log_level, log_format)
    listening = None
    if port == 0:
        # The system picks the port: bound now, so that the issuer and the log name it.
        try:
            listening = listening_socket(host, 0)
        except ListenError as exc:
            fail(str(exc))
        port = listening.getsockname()[1]
    try:
        settings = ServerSettings(
            role=role,  # type: ignore[arg-type]
            host=host,
            port=port,
            data_dir=data_dir,
            issuer=issuer,
            signing_alg=signing_alg,
            token_lifetime=token_lifetime,
            key_rotation_interval=key_rotation_interval,
            key_publish_ahead=key_publish_ahead,
            key_unpublish_margin=key_unpublish_margin,
            workers=workers,
            log_level=log_level,
            log_format=log_format,
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
        if workers > 1 or multiprocess.enabled():
            settings = with_secrets_read(settings)
    except STARTUP_ERRORS as exc:
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
    if issuer is None and host in ANY_ADDRESS and settings.serves_tokens:
        # Tokens would say iss http://0.0.0.0:8080, which no verifier is configured with.
        log.warning(
            "the default issuer names the any-address, not one clients use: pass --issuer "
            "(SWARM_OAUTH_ISSUER) with the URL they reach this server by",
            extra={"issuer": settings.issuer_url},
        )
    listen = functools.partial(
        serve_http, host=host, port=port, limits=limits, tls=tls, listening=listening
    )
    if workers == 1 and not multiprocess.enabled():
        try:
            listen(create_app(runtime))
        except ListenError as exc:
            runtime.close()
            fail(str(exc))
        return
    # Workers are started afresh (spawn), so each imports prometheus_client with the
    # variable already set and writes its metrics where every worker's /metrics reads.
    metrics_dir = multiprocess.prepare_directory()
    runtime.close()
    try:
        listen(WorkerApp(settings), workers=workers, factory=True)
    except (ListenError, WorkerStartError) as exc:
        fail(str(exc))
    finally:
        multiprocess.remove_directory(metrics_dir)
