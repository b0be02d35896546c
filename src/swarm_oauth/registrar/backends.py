"""Which client registry the registrar registers clients in, and how each is opened.

``builtin`` is the token server's own clients API; ``hydra`` is Ory Hydra's admin API;
``dcr`` is any server speaking Dynamic Client Registration (RFC 7591) and its management
protocol (RFC 7592). The reconcile is the same for all: a registry says what it can do in
its ``Capabilities``.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import httpx

from swarm_oauth.admin_client import ca_context
from swarm_oauth.registrar.clients_api import ClientsAPI
from swarm_oauth.registrar.dcr_api import DynamicRegistration
from swarm_oauth.registrar.hydra_api import HydraAdmin
from swarm_oauth.registrar.ports import ClientRegistry, Swarm
from swarm_oauth.registrar.registrations import RegistrationBook
from swarm_oauth.registrar.sealing import Sealer
from swarm_oauth.urls import shown

BackendName = Literal["builtin", "hydra", "dcr"]
BACKENDS: tuple[BackendName, ...] = ("builtin", "hydra", "dcr")


class BackendConfigError(ValueError):
    """A backend lacks a setting it needs."""


@dataclass(frozen=True)
class BackendSettings:
    """Where the registry is, for each backend; only the chosen backend's fields count."""

    name: BackendName = "builtin"
    clients_url: str | None = None
    admin_token: str = field(default="", repr=False)
    hydra_admin_url: str | None = None
    registration_url: str | None = None
    initial_access_token: str | None = field(default=None, repr=False)
    registration_key_file: Path | None = None
    # The CAs an https registry URL is checked against; None: the system's.
    ca_bundle: Path | None = None

    def check(self) -> None:
        """``BackendConfigError`` naming the options the chosen backend misses."""
        needs: dict[str, dict[str, object]] = {
            "builtin": {"--clients-url": self.clients_url},
            "hydra": {"--hydra-admin-url": self.hydra_admin_url},
            "dcr": {
                "--registration-url": self.registration_url,
                "--registration-key-file": self.registration_key_file,
            },
        }
        missing = [option for option, value in needs[self.name].items() if not value]
        if missing:
            raise BackendConfigError(f"the {self.name} backend needs {' and '.join(missing)}")
        for option, value in needs[self.name].items():
            if option.endswith("-url"):
                _check_url(option, str(value))

    @property
    def location(self) -> str:
        """Where clients are registered, for the start-up log (without a password)."""
        return shown(
            str(
                {
                    "builtin": self.clients_url,
                    "hydra": self.hydra_admin_url,
                    "dcr": self.registration_url,
                }[self.name]
            )
        )


def _check_url(option: str, value: str) -> None:
    """``BackendConfigError`` unless ``value`` is an http(s) URL with a host."""
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise BackendConfigError(f"{option} {shown(value)}: {shown(str(exc))}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise BackendConfigError(f"{option} {shown(value)}: not an http or https URL")


def open_registry(settings: BackendSettings, swarm: Swarm) -> ClientRegistry:
    """The chosen backend's registry; ``BackendConfigError``, ``SealingError`` or
    ``ssl.SSLError`` when its settings are unusable."""
    settings.check()
    verify: ssl.SSLContext | bool = ca_context(settings.ca_bundle) if settings.ca_bundle else True
    if settings.name == "hydra":
        return HydraAdmin(str(settings.hydra_admin_url), verify=verify)
    if settings.name == "dcr":
        book = RegistrationBook(swarm, Sealer.from_file(str(settings.registration_key_file)))
        return DynamicRegistration(
            str(settings.registration_url),
            book,
            initial_access_token=settings.initial_access_token,
            verify=verify,
        )
    return ClientsAPI(str(settings.clients_url), settings.admin_token, ca_bundle=settings.ca_bundle)
