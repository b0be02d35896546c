"""Secret values from the environment or files (the Docker-secret ``*_FILE`` convention),
and files created once with owner-only permissions."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


class SecretConfigError(ValueError):
    """A secret's configuration is unusable; the message names the variable, not the value."""


def read_secret_file(path: Path | str) -> str:
    """The file's content without surrounding whitespace; error if missing or empty."""
    try:
        value = Path(path).read_text().strip()
    except OSError as exc:
        raise SecretConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    if not value:
        raise SecretConfigError(f"secret file {path} is empty")
    return value


def secret_from_env(name: str, env: dict[str, str] | None = None) -> str | None:
    """``NAME`` or, failing that, the content of the file ``NAME_FILE`` names."""
    env = dict(os.environ) if env is None else env
    if env.get(name):
        return env[name]
    file_name = env.get(f"{name}_FILE")
    return read_secret_file(file_name) if file_name else None


def create_once(path: Path, content: str) -> bool:
    """Write ``content`` to ``path`` (mode 0600) unless it exists. True if this call wrote it.

    The content is written to a private temporary file first and linked into place, so a
    process starting at the same moment never reads a half-written file.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(content + "\n")
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        temporary.unlink(missing_ok=True)
