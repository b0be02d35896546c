"""The client secret, read from the file the registrar mounts (a Docker secret).

The file is read afresh for every token request instead of being cached behind a
stat() check: requests happen once per token lifetime, the file is tiny, and comparing
mtime/inode/size misses an in-place rewrite of a same-length secret within the
filesystem's timestamp granularity. Reading every time picks up every rotation by
construction. A service's first task may start before its secret exists, so a read
waits, bounded, for the file to appear.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

from swarm_oauth.sdk._flow import Flow, Pause, Runner
from swarm_oauth.sdk.errors import SecretFileError

log = logging.getLogger("swarm_oauth.sdk")

POLL_SECONDS = 0.1


class SecretFile:
    """A secret held in a file that may appear late and may be rewritten at any time."""

    def __init__(self, path: str | Path, wait: float = 30.0, warn_every: float = 5.0) -> None:
        """Read ``path``, waiting up to ``wait`` seconds for it; while waiting, warn at once
        and then every ``warn_every`` seconds, so a missing mount is seen in the log."""
        self.path = Path(path)
        self.wait = wait
        self.warn_every = warn_every
        self._fingerprint: bytes | None = None

    def read(self) -> str:
        """The current secret, waiting up to ``wait`` seconds for the file to appear."""
        return Runner().run(self.reading())

    async def aread(self) -> str:
        """Like ``read`` but sleeps without blocking the event loop."""
        return await Runner().arun(self.reading())

    def reading(self, wait: float | None = None) -> Flow[str]:
        """The flow of ``read``: poll until the file holds a secret or ``wait`` (by default
        the one given at construction) is over."""
        limit = self.wait if wait is None else wait
        started, warned = time.monotonic(), None
        while (secret := self._try_read()) is None:
            now = time.monotonic()
            if now - started >= limit:
                raise self._missing(limit)
            if warned is None or now - warned >= self.warn_every:
                warned = now
                log.warning(
                    "client secret file %s is missing or empty; waited %.0fs of %gs for it",
                    self.path,
                    now - started,
                    limit,
                )
            yield Pause(POLL_SECONDS)
        if warned is not None:
            log.info("client secret file %s appeared", self.path)
        return secret

    def _try_read(self) -> str | None:
        """The secret, or ``None`` while the file is absent or still empty."""
        try:
            secret = self.path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise SecretFileError(
                f"cannot read client secret file {self.path}: {type(error).__name__}"
            ) from None
        if not secret:
            return None
        self._note_change(secret)
        return secret

    def _note_change(self, secret: str) -> None:
        # A digest, not the secret, is kept to tell a rotation apart from a re-read.
        fingerprint = hashlib.sha256(secret.encode()).digest()
        if self._fingerprint is not None and fingerprint != self._fingerprint:
            log.info("client secret in %s changed; using the new one", self.path)
        self._fingerprint = fingerprint

    def _missing(self, waited: float) -> SecretFileError:
        return SecretFileError(
            f"client secret file {self.path} is missing or empty after waiting {waited:g}s"
        )
