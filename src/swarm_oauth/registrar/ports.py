"""The two things the reconciler talks to, as protocols, and the errors they raise."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from swarm_oauth.registrar.model import (
    ClientInfo,
    DockerConfig,
    DockerSecret,
    FreshSecret,
    ObservedService,
    SecretRef,
)


class RegistrarError(Exception):
    """Base of the errors the ports raise; messages never carry a secret."""


class TransientError(RegistrarError):
    """Worth retrying: a connection failed, a peer answered 5xx, or a race was lost."""


class ServiceGone(RegistrarError):
    """The service disappeared while it was being reconciled."""


class Rejected(RegistrarError):
    """A peer refused a request for good (a 4xx other than the expected ones)."""


ServiceEdit = Callable[[ObservedService], tuple[Sequence[SecretRef], Sequence[str]] | None]
"""Given the service as just read, its new secret refs and env, or None to leave it alone."""


class Swarm(Protocol):
    """The Docker Engine, as far as the registrar uses it."""

    def list_services(self) -> list[ObservedService]:
        """Every service of the swarm."""
        ...

    def get_service(self, service_id_or_name: str) -> ObservedService | None:
        """The service whose id or name is exactly this, or None."""
        ...

    def list_secrets(self, labels: Mapping[str, str]) -> list[DockerSecret]:
        """Docker secrets carrying all these labels."""
        ...

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerSecret:
        """Create a Docker secret holding ``data``."""
        ...

    def update_service(self, service_id: str, edit: ServiceEdit) -> bool:
        """Apply ``edit`` to the service's current spec; False if ``edit`` changed nothing.

        Raises ``ServiceGone`` if the service no longer exists. An implementation re-reads
        and re-applies ``edit`` when a concurrent writer got in first.
        """
        ...

    def delete_secret(self, secret_id: str) -> bool:
        """Delete a Docker secret; False if it was already gone."""
        ...

    def secret_exists(self, secret_id: str) -> bool:
        """Whether a Docker secret with this id exists."""
        ...

    def secrets_in_use(self, service_id: str) -> set[str]:
        """Ids of the Docker secrets that a task of the service still runs with (or is
        about to): a secret leaves only once no task uses it."""
        ...

    def list_configs(self, labels: Mapping[str, str]) -> list[DockerConfig]:
        """Docker configs carrying all these labels."""
        ...

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerConfig:
        """Create a Docker config holding ``data``."""
        ...

    def delete_config(self, config_id: str) -> bool:
        """Delete a Docker config; False if it was already gone."""
        ...

    def ping(self) -> None:
        """Raise ``TransientError`` unless the engine answers."""
        ...


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a client registry can do, which the reconcile adapts to."""

    # The registrar chooses each client's id (the service's name or label). Else the
    # server picks it at registration and the registry keeps which is whose.
    chosen_ids: bool = True
    # A client records the audiences it may ask tokens for.
    audiences: bool = True
    # A rotated-out secret keeps working until ``retire_previous`` (Hydra), rather than
    # for a grace given at the rotation (ours).
    retire_on_request: bool = False


class ClientRegistry(Protocol):
    """Where the registrar registers clients: the builtin clients API, Ory Hydra's admin
    API, or any RFC 7591/7592 server. Every method raises ``TransientError`` when the
    registry cannot be reached and ``Rejected`` when it refuses."""

    capabilities: Capabilities

    def find(self, name: str, service_id: str) -> ClientInfo | None:
        """The client registered as ``name`` (the id the service asks for) for that
        service: with chosen ids, the client with that id, whoever's it is; else the
        client the registry recorded for the service under that name."""
        ...

    def get(self, client_id: str) -> ClientInfo | None:
        """The client with this id, or None."""
        ...

    def list(self) -> list[ClientInfo]:
        """Every client the registrar manages (and, for some registries, others too)."""
        ...

    def add(
        self,
        name: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> FreshSecret:
        """Register a client as ``name``; its id is ``name`` with chosen ids, else the
        server's choice. ``TransientError`` if the id was taken meanwhile."""
        ...

    def remove(self, client_id: str) -> bool:
        """Remove a client; False if it was already gone."""
        ...

    def rotate(
        self, client_id: str, grace_seconds: int = 0, *, replace_current: bool = False
    ) -> FreshSecret:
        """Give the client a new secret; the previous one works ``grace_seconds`` longer.

        With ``replace_current``, the current secret (never handed out) is replaced and the
        previous one keeps its grace. ``TransientError`` if the client was removed meanwhile.
        """
        ...

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        """Replace what the client may ask for, keeping its secret; ``TransientError`` if
        it was removed meanwhile."""
        ...

    def retire_previous(self, client_id: str) -> bool:
        """Make the rotated-out secrets stop working now, where they last until told
        (``Capabilities.retire_on_request``); False when there were none."""
        ...

    def ping(self) -> None:
        """Raise ``TransientError`` unless the clients API answers and accepts the token."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
