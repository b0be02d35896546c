"""The two things the reconciler talks to, as protocols, and the errors they raise."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


class ClientRegistry(Protocol):
    """The clients API, as far as the registrar uses it."""

    def get(self, client_id: str) -> ClientInfo | None:
        """The client's record, or None."""
        ...

    def list(self) -> list[ClientInfo]:
        """Every client."""
        ...

    def add(
        self,
        client_id: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> FreshSecret:
        """Register a client; ``TransientError`` if the id was taken meanwhile."""
        ...

    def remove(self, client_id: str) -> bool:
        """Remove a client; False if it was already gone."""
        ...

    def rotate(self, client_id: str) -> FreshSecret:
        """Give the client a new secret; the previous one stops working at once."""
        ...

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        """Replace what the client may ask for, keeping its secret; ``TransientError`` if
        it was removed meanwhile."""
        ...

    def ping(self) -> None:
        """Raise ``TransientError`` unless the clients API answers and accepts the token."""
        ...
