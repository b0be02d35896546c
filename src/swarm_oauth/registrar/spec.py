"""The Docker side of an identity: secret names and labels, and the service spec edits."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from swarm_oauth.registrar.model import (
    ClientInfo,
    DesiredIdentity,
    DockerConfig,
    DockerSecret,
    ObservedService,
    Reservation,
    SecretRef,
)

MANAGED_BY_LABEL = "swarm-oauth.managed-by"
MANAGED_BY_VALUE = "registrar"
SECRET_CLIENT_ID_LABEL = "swarm-oauth.client-id"
SERVICE_ID_LABEL = "swarm-oauth.service-id"
VERSION_LABEL = "swarm-oauth.secret-version"
INCARNATION_LABEL = "swarm-oauth.incarnation"
RESERVED_CLIENT_LABEL = "swarm-oauth.reserved-client-id"
RESERVED_FOR_LABEL = "swarm-oauth.reserved-for"
RESERVED_UNTIL_LABEL = "swarm-oauth.reserved-until"

ENV_CLIENT_ID = "OAUTH_CLIENT_ID"
ENV_TOKEN_URL = "OAUTH_TOKEN_URL"
ENV_SECRET_FILE = "OAUTH_CLIENT_SECRET_FILE"
MANAGED_ENV = (ENV_CLIENT_ID, ENV_TOKEN_URL, ENV_SECRET_FILE)

SECRET_DIR = "/run/secrets"
MAX_SECRET_NAME = 64
_SERVICE_ID_CHARS = 10
_INCARNATION_CHARS = 8

MANAGED = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}
"""The label filter matching every Docker secret the registrar created."""


def service_secrets_filter(service_id: str) -> dict[str, str]:
    """The label filter matching the registrar's Docker secrets for one service."""
    return {**MANAGED, SERVICE_ID_LABEL: service_id}


RESERVATION = {**MANAGED, "swarm-oauth.record": "client-id-reservation"}
"""The label filter matching every client-id reservation (a Docker config)."""


def reservation_labels(client_id: str, service_name: str, until: float) -> dict[str, str]:
    """Labels of the Docker config that reserves ``client_id`` for a service name."""
    return {
        **RESERVATION,
        RESERVED_CLIENT_LABEL: client_id,
        RESERVED_FOR_LABEL: service_name,
        RESERVED_UNTIL_LABEL: str(int(until)),
    }


_UNIX_TIME = re.compile(r"[0-9]{1,12}")


def reservation_of(config: DockerConfig) -> Reservation | None:
    """The reservation a Docker config records, or None if its labels are not one."""
    labels = config.labels
    client_id, service_name = labels.get(RESERVED_CLIENT_LABEL), labels.get(RESERVED_FOR_LABEL)
    until = labels.get(RESERVED_UNTIL_LABEL, "")
    # A label anyone with Docker access may write: ASCII digits (str.isdigit also takes
    # "²"), and few enough of them to be a time the clock functions can show.
    if not (client_id and service_name and _UNIX_TIME.fullmatch(until)):
        return None
    return Reservation(config.id, client_id, service_name, float(until))


def reservation_name(client_id: str, nonce: str) -> str:
    """A unique, valid Docker config name (for people reading ``docker config ls``)."""
    suffix = f"-{nonce}"
    room = MAX_SECRET_NAME - len("oauth-reserved-") - len(suffix)
    return f"oauth-reserved-{client_id[:room].strip('._-') or 'client'}{suffix}"


def client_secrets_filter(client_id: str, service_id: str) -> dict[str, str]:
    """The label filter matching the registrar's Docker secrets of one client for a service."""
    return {**service_secrets_filter(service_id), SECRET_CLIENT_ID_LABEL: client_id}


def secret_labels(client: ClientInfo, service_id: str) -> dict[str, str]:
    """Labels of the Docker secret holding ``client``'s current secret for a service."""
    return {
        **MANAGED,
        SECRET_CLIENT_ID_LABEL: client.client_id,
        SERVICE_ID_LABEL: service_id,
        VERSION_LABEL: str(client.secret_version),
        INCARNATION_LABEL: client.incarnation,
    }


def secret_name(client: ClientInfo, service_id: str) -> str:
    """A unique, valid Docker secret name of at most 64 characters.

    Only for people reading ``docker secret ls``: the registrar finds its secrets by label.
    The incarnation keeps a re-registered client's version 1 apart from the previous one's.
    """
    suffix = (
        f"-{service_id[:_SERVICE_ID_CHARS]}-{client.incarnation[:_INCARNATION_CHARS]}"
        f"-v{client.secret_version}"
    )
    room = MAX_SECRET_NAME - len("oauth-") - len(suffix)
    # A server that picks client ids (dcr) may put anything in them ("@!1234!0001"):
    # Docker takes letters, digits and "_.-", with a letter or digit at each end.
    readable = _NOT_IN_NAMES.sub("-", client.client_id)
    client_part = readable[:room].strip("._-") or "client"
    return f"oauth-{client_part}{suffix}"


_NOT_IN_NAMES = re.compile(r"[^A-Za-z0-9_.-]")


def is_current(secret: DockerSecret, client: ClientInfo, service_id: str) -> bool:
    """Whether this Docker secret holds the client's current secret for that service."""
    return all(secret.labels.get(k) == v for k, v in secret_labels(client, service_id).items())


def attach(
    service: ObservedService,
    desired: DesiredIdentity,
    client_id: str,
    current: DockerSecret,
    managed_ids: Collection[str],
    token_url: str,
) -> tuple[list[SecretRef], list[str]] | None:
    """Refs and env that mount ``current`` (a secret of ``client_id``) at the target, or
    None if already so.

    Refs to the registrar's other secrets (``managed_ids``) are dropped; every other ref
    and variable is kept as it is, in order.
    """
    wanted = SecretRef(
        current.id, current.name, desired.target, desired.uid, desired.gid, desired.mode
    )
    kept = [ref for ref in service.secret_refs if ref.secret_id not in managed_ids]
    ours = [ref for ref in service.secret_refs if ref.secret_id in managed_ids]
    refs = service.secret_refs if ours == [wanted] else (*kept, wanted)
    env = _set_env(
        service.env,
        {
            ENV_CLIENT_ID: client_id,
            ENV_TOKEN_URL: token_url,
            ENV_SECRET_FILE: f"{SECRET_DIR}/{desired.target}",
        },
    )
    if tuple(refs) == service.secret_refs and tuple(env) == service.env:
        return None
    return list(refs), env


def target_taken(
    service: ObservedService, desired: DesiredIdentity, managed_ids: Collection[str]
) -> bool:
    """Whether a secret the registrar does not own is already mounted at the target."""
    return any(
        ref.target == desired.target and ref.secret_id not in managed_ids
        for ref in service.secret_refs
    )


def detach(
    service: ObservedService, managed_ids: Collection[str]
) -> tuple[list[SecretRef], list[str]] | None:
    """Refs and env without the registrar's secrets and variables, or None if none is there.

    Only a service that still mounts one of the registrar's secrets loses the variables:
    one that never had an identity is left exactly as it is.
    """
    kept = [ref for ref in service.secret_refs if ref.secret_id not in managed_ids]
    if len(kept) == len(service.secret_refs):
        return None
    env = [item for item in service.env if _env_key(item) not in MANAGED_ENV]
    return kept, env


def _set_env(env: Sequence[str], values: dict[str, str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for item in env:
        key = _env_key(item)
        if key in values:
            if key in seen:  # a duplicate would override the value set below
                continue
            seen.add(key)
            out.append(f"{key}={values[key]}")
        else:
            out.append(item)
    out.extend(f"{key}={value}" for key, value in values.items() if key not in seen)
    return out


def _env_key(item: str) -> str:
    return item.partition("=")[0]
