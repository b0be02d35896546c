"""``swarm-oauth token``: get an access token as a service would, and print it or its
claims.

With no options it reads what the registrar gives a managed service (``OAUTH_CLIENT_ID``,
``OAUTH_TOKEN_URL``, ``OAUTH_CLIENT_SECRET_FILE``, and ``OAUTH_SCOPE``, ``OAUTH_AUDIENCE``
and ``SWARM_OAUTH_CA_BUNDLE`` when set), as ``TokenSource.from_env()`` does, so
``docker exec TASK swarm-oauth token --claims`` answers "does this service's identity
work?" from inside the service.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
import jwt

from swarm_oauth.cli.options import ca_bundle_option, fail
from swarm_oauth.cli.output import Table, cell, output_option, show
from swarm_oauth.sdk import TokenSource
from swarm_oauth.sdk.errors import ConfigurationError, TokenSourceError
from swarm_oauth.timestamps import iso8601, relative
from swarm_oauth.urls import shown

# Registered JWT claims that hold instants (RFC 7519 §4.1).
_INSTANTS = ("exp", "iat", "nbf", "auth_time")


@click.command()
@click.option("--client-id", envvar="OAUTH_CLIENT_ID", show_envvar=True, help="The client id.")
@click.option(
    "--client-secret-file",
    envvar="OAUTH_CLIENT_SECRET_FILE",
    show_envvar=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="File holding the client secret (in a managed service: /run/secrets/...).",
)
@click.option(
    "--token-url",
    envvar="OAUTH_TOKEN_URL",
    show_envvar=True,
    help="The token endpoint, e.g. http://oauth-tokens:8080/api/token.",
)
# A variable holds a space-separated list, which click splits for a multiple option.
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    envvar="OAUTH_SCOPE",
    show_envvar=True,
    help="A scope to ask for; repeat for each.",
)
@click.option(
    "--audience",
    "audiences",
    multiple=True,
    envvar="OAUTH_AUDIENCE",
    show_envvar=True,
    help="An audience to ask for; repeat for each.",
)
@ca_bundle_option(
    "PEM file of the CAs an https --token-url is checked against. Default: the system's."
)
@click.option(
    "--claims",
    is_flag=True,
    help="Print the token's header and claims (decoded, not verified) instead of the token.",
)
@output_option
def token(
    client_id: str | None,
    client_secret_file: Path | None,
    token_url: str | None,
    scopes: tuple[str, ...],
    audiences: tuple[str, ...],
    ca_bundle: Path | None,
    claims: bool,
    output: str | None,
) -> None:
    """Get an access token with a client id and secret file, and print it (or its claims)."""
    missing = [
        f"{flag} (or {variable})"
        for value, flag, variable in (
            (client_id, "--client-id", "OAUTH_CLIENT_ID"),
            (client_secret_file, "--client-secret-file", "OAUTH_CLIENT_SECRET_FILE"),
            (token_url, "--token-url", "OAUTH_TOKEN_URL"),
        )
        if not value
    ]
    if missing:
        fail("missing " + ", ".join(missing))
    assert client_id and token_url and client_secret_file
    try:
        source = TokenSource(
            client_id,
            token_url,
            client_secret_file=client_secret_file,
            scope=scopes or None,
            audience=" ".join(audiences) or None,
            ca_bundle=ca_bundle,
            secret_wait=0,  # a person asking wants to hear at once that the file is missing
        )
        access_token = source.token()
    except ConfigurationError as exc:
        fail(str(exc))
    except TokenSourceError as exc:
        click.echo(f"error: {client_id} at {shown(token_url)}: {shown(str(exc))}", err=True)
        sys.exit(1)
    if not claims:
        click.echo(access_token)
        return
    _show_claims(output, access_token)


def _show_claims(output: str | None, access_token: str) -> None:
    try:
        header = jwt.get_unverified_header(access_token)
        payload = jwt.decode(access_token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        fail(f"the token endpoint answered with a token that is not a JWT: {exc}")
    now = time.time()
    rows = [(name, _claim_cell(name, value, now)) for name, value in payload.items()]
    show(
        output,
        {"header": header, "claims": payload},
        Table(("HEADER", "VALUE"), [(name, cell(value)) for name, value in header.items()]),
        Table(("CLAIM", "VALUE"), rows),
    )


def _claim_cell(name: str, value: Any, now: float) -> Any:
    if name in _INSTANTS and isinstance(value, int | float):
        return f"{iso8601(value)} ({relative(value, now)})"
    return cell(value)
