"""``swarm-oauth keys``: inspect, rotate and retire signing keys, on the store directly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

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
from swarm_oauth.cli.output import Table, fields, output_option, show
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
from swarm_oauth.keys.timeline import KeyState, key_states
from swarm_oauth.secretfiles import SecretConfigError
from swarm_oauth.store import KeyRecord, Store, StoreError
from swarm_oauth.timestamps import iso8601, relative


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


def _when(epoch: float | None) -> str | None:
    return None if epoch is None else iso8601(epoch)


def key_view(record: KeyRecord, state: KeyState | None) -> dict[str, Any]:
    """A key as the commands print it: ISO 8601 instants, None for "never"."""
    return {
        "kid": record.kid,
        "alg": record.alg,
        "state": state,
        "created_at": _when(record.created_at),
        "activates_at": _when(record.activates_at),
        "retires_at": _when(record.retires_at),
        "unpublish_at": _when(record.unpublish_at),
    }


def next_step(record: KeyRecord, state: KeyState | None, now: float) -> str:
    """What happens to the key next, relative to now: "signs in 4m", "leaves the JWKS in
    14m"."""
    if state == "pending":
        return f"signs {relative(record.activates_at, now)}"
    if state in ("signing", "standby") and record.retires_at is not None:
        return f"retires {relative(record.retires_at, now)}"
    if state in ("signing", "standby"):
        return "signs until a rotation retires it"
    if record.unpublish_at is not None:
        return f"leaves the JWKS {relative(record.unpublish_at, now)}"
    return "published"


def _show_keys(output: str | None, records: list[KeyRecord], now: float) -> None:
    states = key_states(records, now)
    rows = [
        (
            r.kid,
            r.alg,
            states.get(r.kid),
            _when(r.activates_at),
            _when(r.retires_at),
            _when(r.unpublish_at),
            next_step(r, states.get(r.kid), now),
        )
        for r in records
    ]
    table = Table(
        ("KID", "ALG", "STATE", "SIGNS FROM", "SIGNS UNTIL", "IN JWKS UNTIL", "NEXT"),
        rows,
        empty="no published keys",
    )
    show(output, {"keys": [key_view(r, states.get(r.kid)) for r in records]}, table)


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
@output_option
def keys_rotate(
    data_dir: Path,
    database_url: str | None,
    master_key_file: Path | None,
    alg: str,
    issuer: str | None,
    publish_ahead: float,
    unpublish_margin: float,
    token_lifetime: int,
    output: str | None,
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
    now = time.time()
    state = key_states([record], now)[record.kid]
    view = key_view(record, state)
    show(output, view, fields(view), next_step(record, state, now))


@keys.command("retire")
@store_options
@click.argument("kid")
@click.option(
    "--force",
    is_flag=True,
    help="Retire it even if no other key signs now (token requests fail until one does).",
)
@output_option
def keys_retire(
    data_dir: Path, database_url: str | None, kid: str, force: bool, output: str | None
) -> None:
    """Withdraw a key at once (e.g. compromised): it stops signing and leaves the JWKS,
    so the tokens it signed no longer validate. Rotate first so another key signs.

    A kid may start with "-" (it is a base64url thumbprint): write
    `keys retire [OPTIONS] -- KID` so that it is not read as an option.
    """
    try:
        kept = retire_key(
            open_existing_store(data_dir, database_url), kid, time.time(), force=force
        )
    except (StoreError, LastSigningKey, UnknownKey) as exc:
        fail(str(exc))
    show(
        output,
        {"kid": kid, "retired": True, "keep_signing": kept},
        f"retired {kid}: it no longer signs and has left the JWKS"
        + (f"; the rotation to it is cancelled, {', '.join(kept)} keeps signing" if kept else ""),
    )


@keys.command("list")
@store_options
@output_option
def keys_list(data_dir: Path, database_url: str | None, output: str | None) -> None:
    """The published keys: which signs, and when each signs, retires and leaves the JWKS."""
    try:
        records = open_existing_store(data_dir, database_url).list_keys()
    except StoreError as exc:
        fail(str(exc))
    _show_keys(output, records, time.time())
