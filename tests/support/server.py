"""Real token-server processes for tests: ``swarm-oauth serve`` started as a subprocess."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    """A running ``swarm-oauth serve``; ``url`` is its root."""

    data_dir: Path
    role: str = "all"
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    args: Sequence[str] = ()
    host: str = "127.0.0.1"
    # "https" with --tls-cert-file; ``verify`` is then the CA file httpx checks it with.
    scheme: str = "http"
    verify: Any = True
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"server-{self.role}-{self.port}.log"

    @property
    def admin_token(self) -> str:
        explicit = self.env.get("SWARM_OAUTH_ADMIN_TOKEN_FILE")
        path = Path(explicit) if explicit else self.data_dir / "admin-token"
        return path.read_text().strip()

    def start(self, *, wait: bool = True, timeout: float = 20.0) -> ServerProcess:
        """Start the process and, with ``wait``, return once ``/readyz`` answers 200."""
        cmd = [
            sys.executable,
            "-m",
            "swarm_oauth",
            "serve",
            "--role",
            self.role,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.args,
        ]
        env = {**os.environ, "SWARM_OAUTH_LOG_LEVEL": "info", **self.env}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll ``/readyz`` until it answers 200; fail with the server's log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            try:
                ready = httpx.get(f"{self.url}/readyz", timeout=1, verify=self.verify)
                if ready.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"server did not become ready; log:\n{self.log()}")

    def log(self) -> str:
        """Everything the process wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self, workers: int, timeout: float = 30.0) -> set[int]:
        """The pids of ``workers`` distinct worker processes, once each has answered
        ``/healthz`` (a new connection each time, which the kernel spreads over them)."""
        pids: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(pids) < workers:
            assert time.monotonic() < deadline, f"only {len(pids)} workers answered:\n{self.log()}"
            pids.add(httpx.get(self.url + "/healthz", timeout=10).json()["pid"])
        return pids

    def stop(self) -> None:
        """Terminate the process and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> ServerProcess:
        """Stop and start again on the same port and data dir."""
        self.stop()
        return self.start()

    def admin(self) -> httpx.Client:
        """An HTTP client for the clients API with the admin token."""
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=10,
            verify=self.verify,
        )

    def add_client(self, client_id: str, **fields: Any) -> dict[str, Any]:
        """Register a client through the API and return the 201 body (with its secret)."""
        with self.admin() as admin:
            response = admin.post("/api/clients/add", json={"client_id": client_id, **fields})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def token(self, client_id: str, client_secret: str, **form: str) -> httpx.Response:
        """POST /api/token with client_secret_post."""
        data = {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": client_secret,
            **form,
        }
        return httpx.post(f"{self.url}/api/token", data=data, timeout=10, verify=self.verify)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Any]:
    """Start any number of servers; all are stopped when the test ends."""
    started: list[ServerProcess] = []

    def start(
        data_dir: Path | None = None,
        role: str = "all",
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        wait: bool = True,
        **fields: Any,
    ) -> ServerProcess:
        server = ServerProcess(
            data_dir=data_dir or tmp_path / "data", role=role, env=env or {}, args=args, **fields
        )
        started.append(server)
        return server.start(wait=wait)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def token_server(server_factory: Any) -> ServerProcess:
    """One server in the ``all`` role on the embedded default (SQLite, generated keys)."""
    return server_factory()  # type: ignore[no-any-return]
