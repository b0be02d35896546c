"""The servers under load: ours, the floor and the reference, each started the same way.

With one worker a server is pinned to ``SERVER_CORE`` and wrk to ``LOAD_CORE``; with more
workers than one the server needs every core, so neither is pinned (wrk then competes
with the workers, as it would with any co-located client).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

import httpx

from bench import wrk
from bench.procs import Server, free_port

REPO = Path(__file__).resolve().parent.parent
SERVER_CORE = "0"
LOAD_CORE = "1"
CLIENT_ID = "bench"
FORM = "grant_type=client_credentials"


def basic(client_id: str, secret: str) -> str:
    """The ``Authorization`` value for client_secret_basic (RFC 6749 §2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


@dataclass(frozen=True)
class Target:
    """One server configuration to load."""

    kind: str  # ours | floor | reference | reference-stored
    alg: str
    workers: int
    # For ``ours`` only: a source tree to run instead of the installed package (its
    # ``src`` directory, put first on PYTHONPATH) and a name for it in reports.
    src: str | None = None
    variant: str = ""
    # For ``ours`` only: its output on a pipe (``server.proc.stdout``) for the caller to
    # read, instead of a file.
    piped: bool = False

    @property
    def label(self) -> str:
        return {
            "ours": f"swarm-oauth {self.alg}" + (f" [{self.variant}]" if self.variant else ""),
            "floor": "floor: Starlette form + constant",
            "reference": "reference: Authlib/Flask ES256",
            "reference-stored": "reference, tokens stored",
        }[self.kind]

    @property
    def server_cores(self) -> str | None:
        return SERVER_CORE if self.workers == 1 else None

    @property
    def load_cores(self) -> str | None:
        return LOAD_CORE if self.workers == 1 else None


@dataclass
class Running:
    """A started target: its server and the credentials to ask it for tokens."""

    server: Server
    authorization: str

    @property
    def token_url(self) -> str:
        return self.server.url + "/api/token"

    def hit(self, connections: int, seconds: float, cores: str | None) -> tuple[wrk.Load, float]:
        """Token requests from wrk on ``cores`` for ``seconds``: the outcome, and the
        server's CPU time per request in microseconds."""
        used = self.server.cpu_seconds()
        load = wrk.run(
            self.token_url,
            connections=connections,
            seconds=seconds,
            body=FORM,
            authorization=self.authorization,
            cores=cores,
        )
        return load, (self.server.cpu_seconds() - used) / load.requests * 1e6


def _pythonpath() -> dict[str, str]:
    return {"PYTHONPATH": str(REPO)}


def _our_client(server: Server, data_dir: Path) -> str:
    """The bench client's secret, created on the first start of this data dir."""
    saved = data_dir / "bench-client.json"
    if saved.exists():
        return str(json.loads(saved.read_text())["client_secret"])
    admin_token = (data_dir / "admin-token").read_text().strip()
    response = httpx.post(
        server.url + "/api/clients/add",
        json={"client_id": CLIENT_ID},
        headers={"authorization": f"Bearer {admin_token}"},
        timeout=30,
    )
    response.raise_for_status()
    secret = str(response.json()["client_secret"])
    saved.write_text(json.dumps({"client_secret": secret}))
    return secret


def _start_ours(target: Target, workdir: Path) -> Running:
    data_dir = workdir / f"ours-{target.alg}{target.variant}"
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "swarm_oauth",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--signing-alg",
        target.alg,
        "--workers",
        str(target.workers),
    ]
    name = f"ours-{target.alg}-w{target.workers}{target.variant}.log"
    log = None if target.piped else workdir / name
    env = {"PYTHONPATH": target.src} if target.src else None
    server = Server("swarm-oauth", cmd, port, log, env=env, cores=target.server_cores)
    server.wait_listening()
    return Running(server, basic(CLIENT_ID, _our_client(server, data_dir)))


def _start_floor(target: Target, workdir: Path) -> Running:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.floor:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        str(target.workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server = Server(
        "floor", cmd, port, workdir / "floor.log", env=_pythonpath(), cores=target.server_cores
    )
    server.wait_listening()
    return Running(server, basic(CLIENT_ID, "unused"))


def _start_reference(target: Target, workdir: Path) -> Running:
    directory = workdir / "reference"
    if not (directory / "credentials.json").exists():
        setup = subprocess.run(
            [sys.executable, "-m", "bench.reference", "setup", str(directory)],
            env={**os.environ, **_pythonpath()},
            capture_output=True,
            text=True,
            check=True,
        )
        (directory / "credentials.json").write_text(setup.stdout)
    credentials = json.loads((directory / "credentials.json").read_text())
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(target.workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--no-control-socket",
        "bench.reference:create_app()",
    ]
    env = {
        **_pythonpath(),
        "BENCH_REF_DIR": str(directory),
        "BENCH_REF_SAVE_TOKENS": "1" if target.kind == "reference-stored" else "0",
    }
    log = workdir / f"{target.kind}.log"
    server = Server("reference", cmd, port, log, env=env, cores=target.server_cores)
    server.wait_listening()
    return Running(server, basic(credentials["client_id"], credentials["client_secret"]))


STARTERS = {
    "ours": _start_ours,
    "floor": _start_floor,
    "reference": _start_reference,
    "reference-stored": _start_reference,
}


def wait_for_token(running: Running, timeout: float = 60.0) -> None:
    """Return once the server issues a token: a listening socket is not enough (gunicorn
    and uvicorn's workers boot after the port opens), and wrong credentials would make
    every figure an error rate."""
    deadline = time.monotonic() + timeout
    answer = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.post(
                running.token_url,
                content=FORM,
                headers={
                    "content-type": "application/x-www-form-urlencoded",
                    "authorization": running.authorization,
                },
                timeout=10,
            )
        except httpx.TransportError as exc:
            answer = repr(exc)
        else:
            if response.status_code == 200:
                return
            answer = f"{response.status_code} {response.text[:300]}"
        time.sleep(0.2)
    running.server.stop()
    raise RuntimeError(f"{running.server.name} issued no token: {answer}")


def start(target: Target, workdir: Path) -> Running:
    """Start ``target`` with its data in ``workdir`` and wait until it issues tokens."""
    running = STARTERS[target.kind](target, workdir)
    wait_for_token(running)
    return running
