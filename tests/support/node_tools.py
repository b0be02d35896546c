"""The Node.js programs some tests run: Stoplight Prism and panva's oidc-provider, installed
once per machine by .ci/node-tools.sh; Prism serving a contract as a validating mock, and
oidc-provider as an OAuth server with dynamic client registration."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.requirements import unavailable
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "node-tools.sh"
CONTRACTS = ROOT / "tests" / "contracts"
OIDC_SERVER = Path(__file__).resolve().parent / "oidc_provider" / "server.mjs"


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """The directory whose node_modules holds Prism and oidc-provider."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        unavailable("node and npm are missing (Debian: nodejs, npm; .ci/packages.sh)")
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=900, check=False
    )
    if result.returncode != 0:
        unavailable(f"{SCRIPT} failed:\n{result.stderr[-2000:]}")
    return Path(result.stdout.strip())


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    """Wait until something accepts connections on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"not listening on {port} after {timeout:g} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def hydra_mock(node_tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Ory Hydra's published API, served by Prism as a mock that validates every request
    against the contract (a violation comes back in its ``sl-violations`` header)."""
    port = free_port()
    log = tmp_path_factory.mktemp("prism") / "prism.log"
    prism = node_tools / "node_modules" / ".bin" / "prism"
    cmd = [str(prism), "mock", "-h", "127.0.0.1", "-p", str(port),
           str(CONTRACTS / "hydra-openapi.json")]  # fmt: skip
    with _running(cmd, port, log, {"NO_COLOR": "1"}):
        yield f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class OidcProvider:
    """A running oidc-provider: client credentials with JWT access tokens, registration
    (RFC 7591) behind an initial access token, and registration management (RFC 7592)."""

    issuer: str  # as the clients see it (a container uses the gateway's address)
    local: str  # from this process
    initial_access_token: str

    @property
    def registration_url(self) -> str:
        return f"{self.local}/reg"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.local}/jwks"

    # The resource (RFC 8707) every access token is for: server.mjs's RESOURCE.
    audience = "urn:swarm-oauth:test"


@contextlib.contextmanager
def oidc_provider(
    node_tools: Path, log_dir: Path, host: str = "127.0.0.1", public_host: str = "127.0.0.1"
) -> Iterator[OidcProvider]:
    """oidc-provider listening on ``host``; its issuer names ``public_host``."""
    port = free_port()
    issuer = f"http://{public_host}:{port}"
    token = secrets.token_urlsafe(32)
    cmd = ["node", str(OIDC_SERVER), host, str(port), issuer, token]
    with _running(cmd, port, log_dir / "oidc-provider.log", {"NODE_TOOLS": str(node_tools)}):
        yield OidcProvider(issuer, f"http://127.0.0.1:{port}", token)


@contextlib.contextmanager
def _running(cmd: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    try:
        wait_listening(port, proc, log, 60)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
