"""``swarm-oauth registrar``: reconcile swarm services with OAuth clients, and serve the
swarm-listener receiver, status, health and metrics over HTTP.

``swarm-oauth registrar [OPTIONS]`` runs it; ``check-policy``, ``status``, ``rotate``,
``release`` and ``reconcile`` are subcommands beside it, for the operator.
"""

from __future__ import annotations

import functools
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
import httpx

from swarm_oauth.admin_client import ca_context
from swarm_oauth.admin_token import ADMIN_TOKEN_FILENAME, ENV_ADMIN_TOKEN, resolve_admin_token
from swarm_oauth.cli.options import (
    admin_token_file_option,
    ca_bundle_option,
    data_dir_option,
    duration_setting,
    fail,
    host_option,
    listener_options,
    log_format_option,
    log_level_option,
    port_option,
    setting,
)
from swarm_oauth.cli.output import Table, output_option, show
from swarm_oauth.durations import InvalidDuration, format_duration, parse_duration
from swarm_oauth.identifiers import MAX_GRACE_SECONDS, path_segment
from swarm_oauth.logs import configure_logging
from swarm_oauth.registrar.backends import BACKENDS, BackendName, BackendSettings
from swarm_oauth.registrar.identities import DEFAULT_SECRET_MAX_AGE
from swarm_oauth.registrar.labels import DEFAULT_SELECTOR, MIN_SECRET_MAX_AGE
from swarm_oauth.registrar.reconcile import (
    DEFAULT_RESERVATION_SECONDS,
    DEFAULT_ROTATION_GRACE,
    MAX_RESERVATION_SECONDS,
    Outcome,
)
from swarm_oauth.secretfiles import SecretConfigError, read_secret_file, withhold_from_children
from swarm_oauth.serving.limits import HttpLimits, TlsFiles
from swarm_oauth.timestamps import relative
from swarm_oauth.urls import shown

log = logging.getLogger("swarm_oauth.registrar")

DEFAULT_URL = "http://127.0.0.1:8081"

policy_argument = click.argument("policy", type=click.Path(path_type=Path, dir_okay=False))


@click.group(invoke_without_command=True)
@host_option
@port_option(8081)
@setting(
    "--backend",
    env="BACKEND",
    type=click.Choice(BACKENDS),
    default="builtin",
    help="Where clients are registered: the token server's clients API (builtin), Ory "
    "Hydra's admin API (hydra), or any RFC 7591/7592 server (dcr).",
)
@setting(
    "--clients-url",
    env="CLIENTS_URL",
    help="builtin: root of the clients API, e.g. http://oauth-clients:8080.",
)
@setting(
    "--hydra-admin-url",
    env="HYDRA_ADMIN_URL",
    help="hydra: root of Hydra's admin API, e.g. http://hydra:4445.",
)
@setting(
    "--registration-url",
    env="REGISTRATION_URL",
    help="dcr: the registration endpoint (RFC 7591), e.g. https://idp.example/register.",
)
@setting(
    "--initial-access-token-file",
    env="INITIAL_ACCESS_TOKEN_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="dcr: file holding the initial access token the registration endpoint requires.",
)
@setting(
    "--registration-key-file",
    env="REGISTRATION_KEY_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="dcr: file holding 32 or more random bytes (`openssl rand -base64 32`) that seal "
    "the registration access tokens the registrar keeps in Docker configs.",
)
@setting(
    "--token-url",
    env="TOKEN_URL",
    help="The token endpoint services are told to use, e.g. http://oauth-tokens:8080/api/token.",
)
@admin_token_file_option(
    "File holding the admin token: the registrar's API requires it, and the builtin "
    "backend uses it with the clients API. Default: SWARM_OAUTH_ADMIN_TOKEN."
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
    # A reservation's end is a label the registrar reads back as at most 12 digits.
    type=click.FloatRange(0, MAX_RESERVATION_SECONDS),
    default=DEFAULT_RESERVATION_SECONDS,
    help="How long a removed service's client id stays reserved for its service name "
    "(at most 10 years).",
)
@setting(
    "--notify-token-file",
    env="NOTIFY_TOKEN_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding a token that notifications (Authorization: Bearer or ?token=) and "
    "forced passes (Authorization: Bearer) must carry. Default: none required.",
)
@duration_setting(
    "--secret-max-age",
    env="SECRET_MAX_AGE",
    default=DEFAULT_SECRET_MAX_AGE,
    help="The age at which a managed service's client secret is replaced (0: never); a "
    "policy rule or a swarm-oauth.secret-max-age label may ask for a shorter one.",
)
@duration_setting(
    "--rotation-grace",
    env="ROTATION_GRACE",
    default=DEFAULT_ROTATION_GRACE,
    maximum=MAX_GRACE_SECONDS,
    help="How long the replaced secret keeps working: long enough for the rolling update "
    "that hands the new one to every task (at most 30 days).",
)
@setting(
    "--resync-seconds",
    env="RESYNC_SECONDS",
    type=click.FloatRange(1),
    default=60.0,
    help="Seconds between full passes over every service.",
)
@setting("--events/--no-events", env="EVENTS", default=True, help="Follow Docker's event stream.")
@ca_bundle_option(
    "PEM file of the CAs that an https registry URL (--clients-url, --hydra-admin-url, "
    "--registration-url) is checked against. Default: the system's."
)
@listener_options
@log_level_option
@log_format_option
@click.pass_context
def registrar(
    ctx: click.Context,
    host: str,
    port: int,
    backend: BackendName,
    clients_url: str | None,
    hydra_admin_url: str | None,
    registration_url: str | None,
    initial_access_token_file: Path | None,
    registration_key_file: Path | None,
    token_url: str | None,
    admin_token_file: Path | None,
    docker_host: str | None,
    selector: str,
    policy: Path | None,
    id_reservation_seconds: float,
    notify_token_file: Path | None,
    secret_max_age: float,
    rotation_grace: float,
    resync_seconds: float,
    events: bool,
    ca_bundle: Path | None,
    limits: HttpLimits,
    tls: TlsFiles | None,
    log_level: str,
    log_format: str,
) -> None:
    """Give every selected swarm service an OAuth client and its secret, and take them
    away when the service goes."""
    if ctx.invoked_subcommand is not None:
        return
    import ssl

    from swarm_oauth.registrar.labels import Selector
    from swarm_oauth.registrar.policy_file import PolicyError
    from swarm_oauth.registrar.ports import RegistrarError
    from swarm_oauth.registrar.runner import Registrar, RegistrarSettings
    from swarm_oauth.registrar.sealing import SealingError
    from swarm_oauth.serving.run import ListenError
    from swarm_oauth.serving.run import serve as serve_http

    configure_logging(log_level, log_format)
    if not token_url:
        fail("--token-url required (or SWARM_OAUTH_TOKEN_URL)")
    if secret_max_age and secret_max_age < max(MIN_SECRET_MAX_AGE, rotation_grace):
        # A rotation within the last one's grace would end that grace for the tasks
        # still holding the old secret.
        fail(
            f"--secret-max-age {format_duration(secret_max_age)} is shorter than "
            f"--rotation-grace {format_duration(rotation_grace)} (or 30s); 0 means never"
        )
    try:
        Selector.parse(selector)
        admin_token = resolve_admin_token(admin_token_file)
        backend_settings = BackendSettings(
            name=backend,
            clients_url=clients_url,
            admin_token=admin_token,
            hydra_admin_url=hydra_admin_url,
            registration_url=registration_url,
            initial_access_token=read_secret_file(initial_access_token_file)
            if initial_access_token_file
            else None,
            registration_key_file=registration_key_file,
            ca_bundle=ca_bundle,
        )
        settings = RegistrarSettings(
            backend=backend_settings,
            token_url=token_url,
            admin_token=admin_token,
            docker_host=docker_host or None,
            selector=selector,
            resync_seconds=resync_seconds,
            events=events,
            policy_file=policy,
            reservation_seconds=id_reservation_seconds,
            notify_token=read_secret_file(notify_token_file) if notify_token_file else None,
            secret_max_age=secret_max_age,
            rotation_grace=rotation_grace,
        )
        # Read once: no process it starts inherits the token.
        withhold_from_children(ENV_ADMIN_TOKEN)
        runner = Registrar(settings)
    except (SecretConfigError, ValueError, RegistrarError, PolicyError, SealingError) as exc:
        fail(str(exc))
    except ssl.SSLError as exc:
        fail(f"--ca-bundle {ca_bundle}: not a PEM file of CA certificates ({exc.reason})")
    # SIGHUP: re-read the policy now. Installed before uvicorn, which leaves it alone. The
    # handler runs on the main thread between two bytecodes, maybe while that thread holds
    # the controller's pass lock (a forced pass being requested): asking from a thread of
    # its own cannot deadlock on it.
    signal.signal(
        signal.SIGHUP,
        lambda *_: threading.Thread(target=runner.reload, name="sighup", daemon=True).start(),
    )
    log.info(
        "starting registrar",
        extra={
            "backend": backend,
            "registry": backend_settings.location,
            "token_url": token_url,
            "selector": selector,
            "policy": str(policy) if policy else None,
            "resync_seconds": resync_seconds,
            "events": events,
            "notify_token": notify_token_file is not None,
        },
    )
    try:
        serve_http(runner.app, host=host, port=port, limits=limits, tls=tls)
    except ListenError as exc:
        fail(str(exc))


@registrar.command("check-policy")
@policy_argument
def check_policy(policy: Path) -> None:
    """Check a registration policy file without running anything; exit 2 (with the line)
    when it is unusable."""
    from swarm_oauth.registrar.policy_file import PolicyError, dead_rules, load_policy

    try:
        loaded = load_policy(policy)
    except PolicyError as exc:
        fail(str(exc))
    for sentence in dead_rules(loaded):
        click.echo(f"warning: {sentence}", err=True)
    click.echo(f"{policy}: {len(loaded.rules)} rule(s) and a default; the policy is usable")


@dataclass(frozen=True)
class RegistrarApi:
    """Where an operator's subcommand finds the registrar's API, and how it gets in."""

    url: str
    admin_token_file: Path | None
    data_dir: Path
    ca_bundle: Path | None

    def ask(self, method: str, path: str, body: Any = None) -> Any:
        """One request with the admin token; its JSON, or a clear exit."""
        import ssl

        url, ca_bundle = self.url, self.ca_bundle
        try:
            token = resolve_admin_token(self.admin_token_file, self.data_dir / ADMIN_TOKEN_FILENAME)
            verify: ssl.SSLContext | bool = ca_context(ca_bundle) if ca_bundle else True
        except SecretConfigError as exc:
            fail(str(exc))
        except ssl.SSLError as exc:
            fail(f"--ca-bundle {ca_bundle}: not a PEM file of CA certificates ({exc.reason})")
        try:
            response = httpx.request(
                method,
                url.rstrip("/") + path,
                json=body,
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,  # a rotation waits for its reconcile
                verify=verify,
            )
        except httpx.HTTPError as exc:
            cause = f"{type(exc).__name__}: {shown(str(exc))}"
            fail(f"cannot reach the registrar at {shown(url)}: {cause}")
        except httpx.InvalidURL as exc:
            fail(f"--url {shown(url)}: {shown(str(exc))}")
        return _answer(response, shown(f"{url}{path}"))


def _answer(response: httpx.Response, where: str) -> Any:
    """The JSON of the registrar's answer, or a clear exit when it is an error."""
    try:
        body = response.json()
    except ValueError:
        fail(f"{where} answered {response.status_code} without JSON: is --url right?")
    if response.status_code >= 400:
        reason = body.get("error_description") if isinstance(body, dict) else None
        click.echo(f"error: {response.status_code} {reason or body}", err=True)
        sys.exit(1)
    return body


def _member(body: Any, name: str, kind: type) -> Any:
    """``body[name]``, of ``kind``, or a clear exit: ``--url`` may point at another
    server that answers 200 with JSON of its own."""
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, kind):
        fail(f"the answer has no {name}: is --url the registrar's HTTP root?")
    return value


def registrar_api(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--url``, ``--admin-token-file``, ``--data-dir`` and ``--ca-bundle``, handed to
    the command as one ``api``."""

    @setting("--url", env="REGISTRAR_URL", default=DEFAULT_URL, help="The registrar's HTTP root.")
    @admin_token_file_option(
        "Default: SWARM_OAUTH_ADMIN_TOKEN(_FILE), else DATA_DIR/admin-token as serve keeps it."
    )
    @data_dir_option("The server's data dir, where its admin token is found.")
    @ca_bundle_option(
        "PEM file of the CAs an https --url is checked against. Default: the system's."
    )
    @functools.wraps(fn)
    def command(
        url: str,
        admin_token_file: Path | None,
        data_dir: Path,
        ca_bundle: Path | None,
        **arguments: Any,
    ) -> Any:
        return fn(api=RegistrarApi(url, admin_token_file, data_dir, ca_bundle), **arguments)

    return command


@registrar.command("status")
@registrar_api
@output_option
def status(api: RegistrarApi, output: str | None) -> None:
    """Every selected service: its client id, state, the reason for a refusal, a conflict
    or a rollout, its Docker secret and when it last converged."""
    services = _member(api.ask("GET", "/v1/services"), "services", list)
    now = time.time()
    rows = [
        (
            s["service_name"],
            s["client_id"],
            s["state"],
            relative(s["converged_at"], now) if s["converged_at"] else "never",
            s["reason"] or s["secret"],
        )
        for s in services
    ]
    show(
        output,
        {"services": services},
        Table(("SERVICE", "CLIENT", "STATE", "CONVERGED", "SECRET / REASON"), rows,
              empty="(no selected service)"),
    )  # fmt: skip


@registrar.command("rotate")
@click.argument("service")
@click.option(
    "--grace",
    "grace",
    callback=lambda ctx, param, value: None if value is None else _seconds(ctx, param, value),
    metavar="DURATION",
    help="How long the old secret keeps working. Default: the registrar's --rotation-grace. "
    "0 stops it at once (a leaked secret); the service's tasks are replaced either way.",
)
@registrar_api
def rotate(service: str, grace: float | None, api: RegistrarApi) -> None:
    """Give a managed service a new client secret now, and roll its tasks onto it."""
    body = None if grace is None else {"grace_seconds": grace}
    path = f"/v1/services/{quote(service, safe='')}/rotate"
    click.echo(json.dumps(api.ask("POST", path, body)))


def _seconds(ctx: click.Context, param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value)
    except InvalidDuration as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@registrar.command("release")
@click.argument("client_id")
@registrar_api
def release(client_id: str, api: RegistrarApi) -> None:
    """Free a client id reserved for a removed service, before its reservation ends."""
    path = f"/v1/reservations/{path_segment(client_id)}"
    click.echo(json.dumps(api.ask("DELETE", path)))


@registrar.command("reconcile")
@registrar_api
@output_option
def reconcile(api: RegistrarApi, output: str | None) -> None:
    """Run a full pass now (or join the next one) and count how its services and clients
    ended (`registrar status` says which is which)."""
    outcomes: dict[str, int] = _member(api.ask("POST", "/v1/reconcile"), "outcomes", dict)
    # In the order of Outcome, the least in need of attention first.
    order = {outcome.value: rank for rank, outcome in enumerate(Outcome)}
    rows = sorted(outcomes.items(), key=lambda item: order.get(item[0], len(order)))
    show(
        output,
        {"outcomes": outcomes},
        Table(("OUTCOME", "KEYS"), [(name, str(count)) for name, count in rows],
              empty="(nothing selected or attached)"),
    )  # fmt: skip
