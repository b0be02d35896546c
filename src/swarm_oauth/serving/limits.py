"""What a listener accepts, and the files of its TLS certificate."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

# A request line and its headers together; a token request needs well under 1 KiB, and
# 16 KiB is also what Node.js allows by default.
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 100
# From a request's first byte (or the connection's opening) to its last body byte.
REQUEST_TIMEOUT_SECONDS = 10.0
# Per worker process; each costs a file descriptor, so it stays well under the usual
# open-file limit of 1024.
MAX_CONNECTIONS = 512


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on what one worker process accepts from the network."""

    max_header_bytes: int = MAX_HEADER_BYTES
    max_headers: int = MAX_HEADERS
    request_timeout: float = REQUEST_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS


class TlsConfigError(ValueError):
    """The certificate or key cannot be loaded; the message says which file and why."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A PEM certificate chain and its private key (None: the key is in ``cert_file``)."""

    cert_file: Path
    key_file: Path | None = None

    @classmethod
    def of(cls, cert_file: Path | None, key_file: Path | None) -> TlsFiles | None:
        """The pair given on the command line; None for plain HTTP."""
        if cert_file is None:
            if key_file is not None:
                raise TlsConfigError("a TLS key file needs its certificate file too")
            return None
        return cls(cert_file, key_file)

    def check(self) -> None:
        """Load both once, so that a wrong file fails the start with a clear reason
        instead of every worker failing on its own."""
        # OpenSSL's error for a file it cannot open names neither file.
        for path in (self.cert_file, self.key_file):
            if path is None:
                continue
            try:
                path.open("rb").close()
            except OSError as exc:
                raise TlsConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except ssl.SSLError as exc:
            raise TlsConfigError(
                f"{self.cert_file}: not a PEM certificate with its key "
                f"({exc.reason or 'OpenSSL found none in it'})"
            ) from None
        except OSError as exc:
            raise TlsConfigError(
                f"cannot read the TLS certificate or key: {exc.strerror or exc}"
            ) from None
