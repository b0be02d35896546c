"""What several commands share: settings read from a flag or a ``SWARM_OAUTH_*`` variable,
the options that locate the store and the secrets, and how a command fails.

Kept light (click and the standard library): every command module imports it, the
registrar's included, which must not load the server's packages.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click

from swarm_oauth.durations import InvalidDuration, format_duration, parse_duration
from swarm_oauth.logs import LOG_FORMATS
from swarm_oauth.secretfiles import secret_from_env
from swarm_oauth.serving import limits as http_limits
from swarm_oauth.serving.limits import HttpLimits, TlsConfigError, TlsFiles

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

DEFAULT_DATA_DIR = Path("data")
ENV_DATABASE_URL = "SWARM_OAUTH_DATABASE_URL"


def setting(*names: str, env: str, **kwargs: Any) -> Decorator:
    """An option read from its flag, else from ``SWARM_OAUTH_<env>``; ``--help`` shows
    both and the default."""
    kwargs.setdefault("show_default", True)
    return click.option(*names, envvar=f"SWARM_OAUTH_{env}", show_envvar=True, **kwargs)


def fail(message: str) -> NoReturn:
    """End the command with ``error: message`` on stderr and exit code 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def duration_setting(
    *names: str,
    env: str,
    default: float,
    help: str,
    minimum: float = 0.0,
    maximum: float | None = None,
) -> Decorator:
    """A ``setting`` holding a duration (``swarm_oauth.durations``: seconds, or ``45s``,
    ``10m``, ``12h``, ``30d``), passed to the command as float seconds, at least
    ``minimum`` and at most ``maximum``."""

    def convert(ctx: click.Context, param: click.Parameter, value: Any) -> float:
        try:
            seconds = parse_duration(str(value))
        except InvalidDuration as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if seconds < minimum:
            raise click.BadParameter(
                f"{value!r} is shorter than {format_duration(minimum)}", ctx, param
            )
        if maximum is not None and seconds > maximum:
            raise click.BadParameter(
                f"{value!r} is longer than {format_duration(maximum)}", ctx, param
            )
        return seconds

    return setting(
        *names,
        env=env,
        callback=convert,
        default=format_duration(default),
        metavar="DURATION",
        help=help,
    )


def resolve_database_url(flag: str | None) -> str | None:
    """``--database-url``, else ``SWARM_OAUTH_DATABASE_URL`` or the file its ``_FILE``
    variable names (a URL may carry a password)."""
    return flag or secret_from_env(ENV_DATABASE_URL)


host_option = setting("--host", env="HOST", default="127.0.0.1")

log_level_option = setting(
    "--log-level",
    env="LOG_LEVEL",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
)

log_format_option = setting(
    "--log-format",
    env="LOG_FORMAT",
    type=click.Choice(LOG_FORMATS),
    default="json",
    help="json: one object per line, for log collectors; text: for a person at a terminal.",
)


def port_option(default: int) -> Decorator:
    """``--port`` / ``SWARM_OAUTH_PORT`` with this command's default."""
    return setting("--port", env="PORT", type=click.IntRange(0, 65535), default=default)


def admin_token_file_option(help: str) -> Decorator:
    """``--admin-token-file``; what the default is differs by command, hence ``help``."""
    return setting(
        "--admin-token-file",
        env="ADMIN_TOKEN_FILE",
        type=click.Path(path_type=Path, dir_okay=False),
        help=help,
    )


master_key_option = setting(
    "--master-key-file",
    env="MASTER_KEY_FILE",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the master key (base64 of 32 bytes). Default: "
    "SWARM_OAUTH_MASTER_KEY, else DATA_DIR/master.key.",
)


def signing_alg_option(name: str, help: str) -> Decorator:
    """The signing algorithm, ``SWARM_OAUTH_SIGNING_ALG`` for every command that takes one."""
    from swarm_oauth.keys.material import ALGORITHMS

    return setting(
        name, env="SIGNING_ALG", type=click.Choice(ALGORITHMS), default="ES256", help=help
    )


def issuer_option(help: str) -> Decorator:
    """The issuer URL (``iss``), ``SWARM_OAUTH_ISSUER``."""
    return setting("--issuer", env="ISSUER", callback=_issuer, help=help)


def _issuer(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The issuer as given, refused unless RFC 8414 §2 allows it: verifiers compare it
    exactly (§3.3, RFC 9068 §4), so it is never rewritten either."""
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(
            f"{value[:100]!r} is not an http(s) URL with a host, e.g. https://auth.example",
            ctx,
            param,
        )
    if "?" in value or "#" in value:
        raise click.BadParameter(
            "an issuer has no query or fragment (RFC 8414 §2): the metadata's URLs are "
            "built from it",
            ctx,
            param,
        )
    if value.endswith("/"):
        raise click.BadParameter(
            f"write it without the trailing '/' ({value.rstrip('/')}): tokens and metadata "
            "carry the issuer as written, and verifiers compare it exactly",
            ctx,
            param,
        )
    return value


def token_lifetime_option(help: str) -> Decorator:
    """Seconds an access token is valid, ``SWARM_OAUTH_TOKEN_LIFETIME``."""
    return setting(
        "--token-lifetime",
        env="TOKEN_LIFETIME",
        type=click.IntRange(1, 86400),
        default=900,
        help=help,
    )


def publish_ahead_option(name: str) -> Decorator:
    """How long a new signing key is published before it signs,
    ``SWARM_OAUTH_KEY_PUBLISH_AHEAD``, for every command that adds one."""
    from swarm_oauth.keys.rotation import DEFAULT_PUBLISH_AHEAD_SECONDS

    return duration_setting(
        name,
        env="KEY_PUBLISH_AHEAD",
        default=DEFAULT_PUBLISH_AHEAD_SECONDS,
        help="How long a new key is in the JWKS before it signs, so that verifiers caching "
        "the JWKS learn it first (longer than their cache: see docs/server.md).",
    )


def unpublish_margin_option(name: str) -> Decorator:
    """How long a retired key stays published after its last token expired,
    ``SWARM_OAUTH_KEY_UNPUBLISH_MARGIN``."""
    from swarm_oauth.keys.keyring import UNPUBLISH_MARGIN_SECONDS, UNPUBLISH_SLACK_SECONDS

    return duration_setting(
        name,
        env="KEY_UNPUBLISH_MARGIN",
        default=UNPUBLISH_MARGIN_SECONDS,
        minimum=UNPUBLISH_SLACK_SECONDS,
        help="How long a retired key stays in the JWKS after the last token it signed "
        "expired, for clock skew and verifiers' leeway.",
    )


def data_dir_option(help: str) -> Decorator:
    """``--data-dir`` / ``SWARM_OAUTH_DATA_DIR``, ``./data`` by default."""
    return setting(
        "--data-dir",
        env="DATA_DIR",
        type=click.Path(path_type=Path),
        default=DEFAULT_DATA_DIR,
        help=help,
    )


def store_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--data-dir`` and ``--database-url``: where the store is."""
    fn = setting(
        "--database-url",
        env="DATABASE_URL",
        help="sqlite:///path or postgresql://...; also SWARM_OAUTH_DATABASE_URL_FILE."
        " Default: SQLite in the data dir.",
    )(fn)
    return data_dir_option("Where the embedded SQLite store and generated secrets live.")(fn)


class LateOptionsGroup(click.Group):
    """A group whose own options may also follow its subcommand: ``clients list --url U``
    as well as ``clients --url U list``; given in both places, the later one wins.

    Each subcommand gets a copy of the group's options that only records a value given
    on its command line into the group's parameters, so the group's command reads
    them (``ctx.parent.params``) once its subcommand's arguments are parsed.
    """

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        taken = {param.name for param in cmd.params}
        for param in self.params:
            if isinstance(param, click.Option) and param.name not in taken:
                cmd.params.append(
                    click.Option(
                        param.opts,
                        type=param.type,
                        help=param.help,
                        expose_value=False,
                        callback=_record_in_group,
                    )
                )
        super().add_command(cmd, name)


def _record_in_group(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value is not None and ctx.parent is not None and param.name is not None:
        ctx.parent.params[param.name] = value


def ca_bundle_option(help: str) -> Decorator:
    """``--ca-bundle``: the CA certificates an https URL's server is checked against."""
    return setting(
        "--ca-bundle",
        env="CA_BUNDLE",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        help=help,
    )


_FILE = click.Path(path_type=Path, dir_okay=False)
_LISTENER_OPTIONS = (
    setting(
        "--tls-cert-file",
        env="TLS_CERT_FILE",
        type=_FILE,
        help="PEM certificate chain: serve HTTPS instead of HTTP.",
    ),
    setting(
        "--tls-key-file",
        env="TLS_KEY_FILE",
        type=_FILE,
        help="PEM private key of --tls-cert-file. Default: inside the certificate file.",
    ),
    setting(
        "--max-connections",
        env="MAX_CONNECTIONS",
        type=click.IntRange(1),
        default=http_limits.MAX_CONNECTIONS,
        help="Open connections per worker process; more are answered 503 and closed.",
    ),
    setting(
        "--max-header-bytes",
        env="MAX_HEADER_BYTES",
        type=click.IntRange(1024),
        default=http_limits.MAX_HEADER_BYTES,
        help="Bytes of a request line and headers together; more are answered 431.",
    ),
    setting(
        "--max-headers",
        env="MAX_HEADERS",
        type=click.IntRange(1),
        default=http_limits.MAX_HEADERS,
        help="Header fields in a request; more are answered 431.",
    ),
    setting(
        "--request-timeout",
        env="REQUEST_TIMEOUT",
        type=click.FloatRange(0.1),
        default=http_limits.REQUEST_TIMEOUT_SECONDS,
        help="Seconds a request (headers and body) may take to arrive; then 408 and close.",
    ),
)


def listener_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The listener's TLS files and limits, handed to the command as ``limits``
    (``HttpLimits``) and ``tls`` (``TlsFiles`` or None, already loaded once)."""

    @functools.wraps(fn)
    def command(
        *args: Any,
        tls_cert_file: Path | None,
        tls_key_file: Path | None,
        max_connections: int,
        max_header_bytes: int,
        max_headers: int,
        request_timeout: float,
        **kwargs: Any,
    ) -> Any:
        limits = HttpLimits(max_header_bytes, max_headers, request_timeout, max_connections)
        if click.get_current_context().invoked_subcommand is not None:
            # A group's subcommand (``registrar status``) listens on nothing: the
            # daemon's certificate, broken or absent, is none of its business.
            return fn(*args, limits=limits, tls=None, **kwargs)
        try:
            tls = TlsFiles.of(tls_cert_file, tls_key_file)
            if tls is not None:
                tls.check()
        except TlsConfigError as exc:
            fail(str(exc))
        return fn(*args, limits=limits, tls=tls, **kwargs)

    decorated: Callable[..., Any] = command
    for option in reversed(_LISTENER_OPTIONS):
        decorated = option(decorated)
    return decorated
