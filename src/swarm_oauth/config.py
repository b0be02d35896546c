"""Server settings: what ``swarm-oauth serve`` was told, from options, environment and files.

The command line (``cli.py``) reads each option from its flag or its ``SWARM_OAUTH_*``
variable; secrets are never flags, only ``SWARM_OAUTH_X`` or ``SWARM_OAUTH_X_FILE``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from swarm_oauth.keys.keyring import UNPUBLISH_MARGIN_SECONDS
from swarm_oauth.keys.rotation import (
    DEFAULT_PUBLISH_AHEAD_SECONDS,
    DEFAULT_ROTATION_INTERVAL_SECONDS,
)

Role = Literal["all", "tokens", "clients"]
ROLES: tuple[Role, ...] = ("all", "tokens", "clients")


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Everything a server process needs. Secrets are kept out of ``repr``; worker
    processes receive this object pickled over a pipe, never through their environment."""

    role: Role = "all"
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = field(default_factory=lambda: Path("data"))
    issuer: str | None = None
    signing_alg: str = "ES256"
    token_lifetime: int = 900
    workers: int = 1
    # Seconds; an interval of 0 turns automatic key rotation off.
    key_rotation_interval: float = DEFAULT_ROTATION_INTERVAL_SECONDS
    key_publish_ahead: float = DEFAULT_PUBLISH_AHEAD_SECONDS
    key_unpublish_margin: float = UNPUBLISH_MARGIN_SECONDS
    log_level: str = "info"
    log_format: str = "json"
    # Whether the listener serves HTTPS (the default issuer's scheme follows it).
    tls: bool = False
    # Where the secrets live; None means "the environment, else generated in data_dir".
    master_key_file: Path | None = None
    admin_token_file: Path | None = None
    # May carry a password: kept out of repr, read from SWARM_OAUTH_DATABASE_URL(_FILE).
    database_url: str | None = field(default=None, repr=False)
    # The values of SWARM_OAUTH_MASTER_KEY / SWARM_OAUTH_ADMIN_TOKEN when the secrets came
    # from the environment: ``serve`` moves them here and out of the environment.
    master_key: str | None = field(default=None, repr=False)
    admin_token: str | None = field(default=None, repr=False)

    @property
    def issuer_url(self) -> str:
        """The ``iss`` of every token: the configured issuer, else ``http(s)://HOST:PORT``."""
        if self.issuer:
            return self.issuer.rstrip("/")
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6 (RFC 3986 §3.2.2)
        return f"{scheme}://{host}:{self.port}"

    @property
    def serves_tokens(self) -> bool:
        return self.role in ("all", "tokens")

    @property
    def serves_clients(self) -> bool:
        return self.role in ("all", "clients")
