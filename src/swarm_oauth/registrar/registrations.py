"""Where the ``dcr`` backend remembers its clients: one Docker config per registration.

A server that picks client ids (RFC 7591) lists nothing back: the registrar must remember
which client it registered for which service, and the client's registration access token
(RFC 7592), which alone lets it read, change or delete that client later. Each
registration is a Docker config whose labels carry the public part (client id, the id the
service asked for, the service, the secret's version) and, sealed (see ``sealing``), the
token and the client's configuration URL. A config cannot change: a new generation of a
record is a new config, and older generations are deleted after it exists, so a crash in
between leaves two generations of which the newest wins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from swarm_oauth.registrar.model import DockerConfig
from swarm_oauth.registrar.ports import Rejected, Swarm
from swarm_oauth.registrar.sealing import Sealer, SealingError
from swarm_oauth.registrar.spec import MANAGED, SECRET_CLIENT_ID_LABEL, SERVICE_ID_LABEL

REGISTRATION = {**MANAGED, "swarm-oauth.record": "client-registration"}
"""The label filter matching every registration record."""
NAME_LABEL = "swarm-oauth.client-name"
PUBLIC_LABEL = "swarm-oauth.registration"
SEALED_LABEL = "swarm-oauth.registration-sealed"


@dataclass(frozen=True, slots=True)
class Credentials:
    """What lets the registrar manage one client at its server (RFC 7592)."""

    access_token: str = field(repr=False)
    client_uri: str
    # SHA-256 of the client's current secret: tells a new secret from the same one when a
    # server answers an update with one.
    secret_digest: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Registration:
    """One client the registrar registered at a server that chose its id."""

    client_id: str
    name: str
    service_id: str
    metadata: Mapping[str, Any]
    scopes: tuple[str, ...]
    # Counts the secrets handed to the service under ``name``: each rotation registers
    # anew, so the newest registration of a name is the current one.
    secret_version: int
    generation: int = 1
    sealed: str = field(default="", repr=False)
    config_id: str = ""


def secret_digest(secret: str) -> str:
    """The fingerprint ``Credentials.secret_digest`` holds."""
    return hashlib.sha256(secret.encode()).hexdigest()


class RegistrationBook:
    """Registration records in Docker configs, their tokens sealed with ``sealer``."""

    def __init__(self, swarm: Swarm, sealer: Sealer) -> None:
        self._swarm = swarm
        self._sealer = sealer

    def all(self) -> list[Registration]:
        """The newest generation of every record."""
        return _newest(self._records(REGISTRATION))

    def of(self, name: str, service_id: str) -> list[Registration]:
        """The records of a service's registrations under ``name``, newest secret first."""
        found = _newest(self._records({**REGISTRATION, SERVICE_ID_LABEL: service_id}))
        mine = [r for r in found if r.name == name]
        return sorted(mine, key=lambda r: r.secret_version, reverse=True)

    def get(self, client_id: str) -> Registration | None:
        """The newest record of ``client_id``, or None."""
        found = _newest(self._records({**REGISTRATION, SECRET_CLIENT_ID_LABEL: client_id}))
        return found[0] if found else None

    def credentials(self, record: Registration) -> Credentials:
        """The record's sealed part; ``Rejected`` if it does not open with this key."""
        try:
            opened = json.loads(self._sealer.open(record.sealed, record.client_id))
            return Credentials(opened["token"], opened["uri"], opened["digest"])
        except (SealingError, ValueError, KeyError, TypeError) as exc:
            raise Rejected(
                f"the registration record of client {record.client_id} cannot be read: {exc}"
            ) from None

    def write(self, record: Registration, credentials: Credentials) -> Registration:
        """Store ``record`` (as a generation after any existing one) with ``credentials``;
        older generations are deleted once it is stored."""
        previous = self._records({**REGISTRATION, SECRET_CLIENT_ID_LABEL: record.client_id})
        generation = max((r.generation for r in previous), default=0) + 1
        secret = {
            "token": credentials.access_token,
            "uri": credentials.client_uri,
            "digest": credentials.secret_digest,
        }
        sealed = self._sealer.seal(json.dumps(secret).encode(), record.client_id)
        stored = replace(record, generation=generation, sealed=sealed)
        config = self._swarm.create_config(
            _config_name(record.client_id, generation),
            f"registration of client {record.client_id} for service {record.service_id}\n".encode(),
            _labels(stored),
        )
        for old in previous:
            self._swarm.delete_config(old.config_id)
        return replace(stored, config_id=config.id)

    def drop(self, client_id: str) -> None:
        """Delete every record of ``client_id``."""
        for config in self._swarm.list_configs({**REGISTRATION, SECRET_CLIENT_ID_LABEL: client_id}):
            self._swarm.delete_config(config.id)

    def _records(self, labels: Mapping[str, str]) -> list[Registration]:
        return [r for c in self._swarm.list_configs(labels) if (r := _record(c)) is not None]


def _newest(records: Sequence[Registration]) -> list[Registration]:
    newest: dict[str, Registration] = {}
    for record in records:
        known = newest.get(record.client_id)
        if known is None or record.generation > known.generation:
            newest[record.client_id] = record
    return list(newest.values())


def _config_name(client_id: str, generation: int) -> str:
    # Server-chosen ids may hold anything; a digest keeps the name valid and short.
    return f"oauth-registration-{hashlib.sha256(client_id.encode()).hexdigest()[:24]}-{generation}"


def _labels(record: Registration) -> dict[str, str]:
    public = {
        "metadata": dict(record.metadata),
        "scopes": list(record.scopes),
        "secret_version": record.secret_version,
        "generation": record.generation,
    }
    return {
        **REGISTRATION,
        SECRET_CLIENT_ID_LABEL: record.client_id,
        SERVICE_ID_LABEL: record.service_id,
        NAME_LABEL: record.name,
        PUBLIC_LABEL: json.dumps(public, sort_keys=True),
        SEALED_LABEL: record.sealed,
    }


def _record(config: DockerConfig) -> Registration | None:
    """The record a config holds, or None if its labels are not one (someone else's)."""
    labels = config.labels
    try:
        public = json.loads(labels.get(PUBLIC_LABEL, ""))
        metadata, scopes = public["metadata"], public["scopes"]
        version, generation = public["secret_version"], public["generation"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    client_id, service_id = labels.get(SECRET_CLIENT_ID_LABEL), labels.get(SERVICE_ID_LABEL)
    name, sealed = labels.get(NAME_LABEL), labels.get(SEALED_LABEL)
    if not (client_id and service_id and name and sealed):
        return None
    if not (isinstance(metadata, dict) and isinstance(scopes, list)):
        return None
    if not (isinstance(version, int) and isinstance(generation, int)):
        return None
    return Registration(
        client_id,
        name,
        service_id,
        metadata,
        tuple(str(s) for s in scopes),
        version,
        generation,
        sealed,
        config.id,
    )
