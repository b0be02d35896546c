"""``swarm-oauth keys``: inspect, rotate and retire signing keys, on the store directly."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from swarm_oauth.cli.db import open_existing_store
from swarm_oauth.cli.options import (
    fail,
    issuer_option,
    master_key_option,
    publish_ahead_option,
    signing_alg_option,
    store_options,
    token_lifetime_option,
    unpublish_margin_option,
)
from swarm_oauth.config import ServerSettings
from swarm_oauth.keys import (
    LastSigningKey,
    MasterKey,
    MasterKeyError,
    UnknownKey,
    check_master_key,
    retire_key,
    rotate_keys,
)
from swarm_oauth.secretfiles import SecretConfigError
from swarm_oauth.store import KeyRecord, Store, StoreError


@click.group()
def keys() -> None:
    """Inspect, rotate and retire signing keys (works on the store directly)."""


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
@signing_alg_option(
    "--alg", "Algorithm of the new key (the same variable as serve's --signing-alg)."
)
@issuer_option(
    "The servers' issuer URL (serve's --issuer), named in the new key's certificate as serve "
    "names it in the keys it creates."
)
@publish_ahead_option("--publish-ahead")
@unpublish_margin_option("--unpublish-margin")
@token_lifetime_option(
    "The servers' token lifetime: old keys stay published this long after they stop signing, "
    "plus the unpublish margin (the servers never issue a token that outlives its key's "
    "publication)."
)
def keys_rotate(
    data_dir: Path,
    database_url: str | None,
    master_key_file: Path | None,
    alg: str,
    issuer: str | None,
    publish_ahead: float,
    unpublish_margin: float,
    token_lifetime: int,
) -> None:
    """Add a signing key and retire the current ones when it activates."""
    try:
        store = open_existing_store(data_dir, database_url)
        master = _existing_master_key(store, data_dir, master_key_file)
        record = rotate_keys(
            store,
            master,
            alg=alg,
            issuer=issuer or "swarm-oauth",
            now=time.time(),
            publish_ahead=publish_ahead,
            token_lifetime=token_lifetime,
            unpublish_margin=unpublish_margin,
        )
    except (SecretConfigError, MasterKeyError, StoreError) as exc:
        fail(str(exc))
    _echo_key(record)


@keys.command("retire")
@store_options
@click.argument("kid")
@click.option(
    "--force",
    is_flag=True,
    help="Retire it even if no other key signs now (token requests fail until one does).",
)
def keys_retire(data_dir: Path, database_url: str | None, kid: str, force: bool) -> None:
    """Withdraw a key at once (e.g. compromised): it stops signing and leaves the JWKS,
    so the tokens it signed no longer validate. Rotate first so another key signs."""
    try:
        retire_key(open_existing_store(data_dir, database_url), kid, time.time(), force=force)
    except (StoreError, LastSigningKey, UnknownKey) as exc:
        fail(str(exc))
    click.echo(json.dumps({"kid": kid, "retired": True}))


@keys.command("list")
@store_options
def keys_list(data_dir: Path, database_url: str | None) -> None:
    """The published keys and when each signs, retires and leaves the JWKS."""
    try:
        records = open_existing_store(data_dir, database_url).list_keys()
    except StoreError as exc:
        fail(str(exc))
    for record in records:
        _echo_key(record)
