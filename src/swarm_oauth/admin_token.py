"""The admin token: where every command finds it; and how a bearer secret is checked."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from swarm_oauth.secretfiles import (
    SecretConfigError,
    create_once,
    read_secret_file,
    secret_from_env,
)

log = logging.getLogger("swarm_oauth.admin_token")

ENV_ADMIN_TOKEN = "SWARM_OAUTH_ADMIN_TOKEN"
ADMIN_TOKEN_FILENAME = "admin-token"


def resolve_admin_token(
    token_file: Path | None, fallback: Path | None = None, *, create: bool = False
) -> str:
    """The admin token, looked up in one order everywhere.

    ``token_file`` (``--admin-token-file``), else ``SWARM_OAUTH_ADMIN_TOKEN`` or the file
    ``SWARM_OAUTH_ADMIN_TOKEN_FILE`` names, else the ``fallback`` file (the server's
    ``DATA_DIR/admin-token``), generated there first when ``create``. It must be
    printable ASCII, which is what an HTTP client can send in an ``Authorization`` header.
    """
    token = _find_admin_token(token_file, fallback, create)
    if not (token.isascii() and token.isprintable()):
        raise SecretConfigError(
            "the admin token must be printable ASCII (it is sent in an HTTP header)"
        )
    return token


def _find_admin_token(token_file: Path | None, fallback: Path | None, create: bool) -> str:
    if token_file is not None:
        return read_secret_file(token_file)
    configured = secret_from_env(ENV_ADMIN_TOKEN)
    if configured is not None:
        return configured
    if fallback is None:
        raise SecretConfigError(
            "no admin token: pass --admin-token-file, SWARM_OAUTH_ADMIN_TOKEN_FILE "
            "or SWARM_OAUTH_ADMIN_TOKEN"
        )
    if create and create_once(fallback, secrets.token_urlsafe(32)):
        log.info("generated the admin token", extra={"path": str(fallback)})
    return read_secret_file(fallback)


@dataclass(frozen=True, slots=True)
class SharedSecret:
    """Checks presented bearer tokens against a shared secret (the admin token, the
    registrar's notify token) without keeping it around in clear."""

    digest: bytes

    @classmethod
    def of(cls, token: str) -> SharedSecret:
        """The checker for ``token``."""
        return cls(hashlib.sha256(token.encode()).digest())

    def matches(self, presented: str) -> bool:
        """Constant-time comparison of digests (equal length whatever was presented)."""
        return hmac.compare_digest(hashlib.sha256(presented.encode()).digest(), self.digest)
