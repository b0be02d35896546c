"""Secret values from the environment or files (the Docker-secret ``*_FILE`` convention),
and files and directories that only their owner may read, whatever the umask."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger("swarm_oauth.files")

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


class SecretConfigError(ValueError):
    """A secret's configuration is unusable; the message names the variable, not the value."""


# Far more than any token, key or database URL: a file past it is the wrong file (or
# /dev/zero), which is not read into memory whole.
MAX_SECRET_FILE_BYTES = 64 * 1024


def read_secret_file(path: Path | str) -> str:
    """The file's content without surrounding whitespace; error if missing, empty or
    larger than ``MAX_SECRET_FILE_BYTES``."""
    try:
        with Path(path).open("rb") as file:
            content = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        raise SecretConfigError(f"cannot read secret file {path}: {exc.strerror}") from None
    if len(content) > MAX_SECRET_FILE_BYTES:
        raise SecretConfigError(
            f"secret file {path} is larger than {MAX_SECRET_FILE_BYTES // 1024} KiB: "
            "not a secret this program reads"
        )
    try:
        value = content.decode().strip()
    except UnicodeDecodeError:
        raise SecretConfigError(f"secret file {path} is not UTF-8 text") from None
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


def withhold_from_children(*names: str) -> None:
    """Remove these variables from this process's environment once they have been read,
    so that no process it starts (uvicorn's workers) inherits the secrets they hold."""
    for name in names:
        os.environ.pop(name, None)


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and its parents) if needed and make it mode 0700, whatever the
    umask: it holds the store and may hold generated secrets. One owned by another user
    is left as it is, with a warning if others may read it."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    except (FileExistsError, NotADirectoryError):  # it, or a parent, is a file
        raise SecretConfigError(f"data dir {path}: not a directory") from None
    info = path.stat()
    if stat.S_IMODE(info.st_mode) == PRIVATE_DIR_MODE:
        return
    if info.st_uid == os.geteuid():
        # mkdir's mode passes through the umask; an existing directory keeps its own.
        path.chmod(PRIVATE_DIR_MODE)
    elif stat.S_IMODE(info.st_mode) & 0o077:
        log.warning(
            "the data dir belongs to another user and others may read it: it holds the "
            "store and may hold generated secrets",
            extra={"path": str(path)},
        )


def make_private_file(path: Path, *, create: bool = True) -> None:
    """Make ``path`` mode 0600 (creating it empty when ``create`` and missing), whatever
    the umask; a file owned by another user is left alone."""
    flags = os.O_RDONLY | (os.O_CREAT if create else 0)
    try:
        fd = os.open(path, flags, PRIVATE_FILE_MODE)
    except FileNotFoundError:
        if create:
            raise
        return
    try:
        info = os.fstat(fd)
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != PRIVATE_FILE_MODE:
            os.fchmod(fd, PRIVATE_FILE_MODE)
    finally:
        os.close(fd)


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
