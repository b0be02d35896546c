"""What the registrar sees and wants: plain values, free of Docker and HTTP types."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

MANAGED_BY = "swarm-oauth-registrar"
"""``metadata["managed_by"]`` of every client the registrar registered."""

STACK_NAMESPACE_LABEL = "com.docker.stack.namespace"

# Docker's service names and swarm's service ids (25 base-36 characters) all fit this. The
# Docker SDK puts a reference into the URL path unescaped, so "../../info" would read
# another endpoint: nothing else may reach it.
_SERVICE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def is_service_ref(ref: str) -> bool:
    """Whether ``ref`` can be a Docker service id or name."""
    return _SERVICE_REF.fullmatch(ref) is not None


@dataclass(frozen=True, slots=True)
class SecretRef:
    """One entry of a service's ``TaskTemplate.ContainerSpec.Secrets``."""

    secret_id: str
    secret_name: str
    target: str
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444


@dataclass(frozen=True, slots=True)
class ObservedService:
    """A swarm service as Docker reports it right now."""

    id: str
    name: str
    labels: Mapping[str, str]
    secret_refs: tuple[SecretRef, ...] = ()
    env: tuple[str, ...] = ()

    @property
    def stack_namespace(self) -> str | None:
        """The stack this service was deployed with, if any."""
        return self.labels.get(STACK_NAMESPACE_LABEL)


@dataclass(frozen=True, slots=True)
class DesiredIdentity:
    """The OAuth identity a selected service should have: what its labels ask for, as
    the registration policy allows it, and how its secret file is mounted."""

    client_id: str
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    target: str
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444
    # Seconds after which its client secret is rotated (0: never).
    secret_max_age: float = 0.0


@dataclass(frozen=True, slots=True)
class DockerSecret:
    """A Docker secret's descriptor (Docker never gives its data back); ``created_at`` is
    Unix time, the age of the client secret it holds."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """A Docker config's descriptor: where the registrar keeps small public records."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A removed service's client id, kept for a service of the same name until ``until``
    (Unix time), so that a redeploy gap cannot be used to take it."""

    config_id: str
    client_id: str
    service_name: str
    until: float


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client record of the clients API (which never returns the secret)."""

    client_id: str
    secret_version: int
    metadata: Mapping[str, Any] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    # Until when (Unix time) the previous secret still works, during a rotation's grace.
    previous_secret_expires_at: float | None = None
    # Until when the current secret works, where its server ends it (RFC 7591
    # client_secret_expires_at); None: it does not.
    secret_expires_at: float | None = None

    @property
    def managed(self) -> bool:
        """Whether the registrar registered this client (and may therefore change it)."""
        return self.metadata.get("managed_by") == MANAGED_BY

    @property
    def name(self) -> str:
        """The id the service asked for: the client id itself where the registrar chooses
        ids, else what the registry recorded beside the server's id."""
        value = self.metadata.get("name")
        return value if isinstance(value, str) and value else self.client_id

    @property
    def service_id(self) -> str | None:
        """The id of the service the registrar registered this client for."""
        value = self.metadata.get("service_id")
        return value if isinstance(value, str) else None

    @property
    def service_name(self) -> str | None:
        """The service's name when the client was registered."""
        value = self.metadata.get("service_name")
        return value if isinstance(value, str) else None

    @property
    def incarnation(self) -> str:
        """The nonce of this registration, carried by its Docker secrets (see ``spec``)."""
        value = self.metadata.get("incarnation")
        return value if isinstance(value, str) else ""


def client_metadata(service: ObservedService, incarnation: str) -> dict[str, str]:
    """What the registrar records on a client it registers for ``service``."""
    return {
        "managed_by": MANAGED_BY,
        "service_id": service.id,
        "service_name": service.name,
        "incarnation": incarnation,
    }


@dataclass(frozen=True, slots=True)
class FreshSecret:
    """A client's clear secret, just returned by add or rotate; kept in memory only, until
    it is in a Docker secret."""

    client: ClientInfo
    secret: str = field(repr=False)

    def __repr__(self) -> str:  # a stray log or traceback must not print the secret
        return f"FreshSecret(client_id={self.client.client_id!r}, secret=<redacted>)"


KeyKind = Literal["service", "client"]


@dataclass(frozen=True, slots=True, order=True)
class Key:
    """What the registrar's work queue holds: a swarm service by id, or a managed client
    by id (one whose service is gone or wants another client). Never a name: a trigger
    resolves names to keys before it enqueues."""

    kind: KeyKind
    id: str

    @classmethod
    def service(cls, service_id: str) -> Key:
        """The key of a swarm service."""
        return cls("service", service_id)

    @classmethod
    def client(cls, client_id: str) -> Key:
        """The key of a client the registrar manages."""
        return cls("client", client_id)

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"
