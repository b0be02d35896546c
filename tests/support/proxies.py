"""Real reverse proxies for the forward-auth tests: nginx and Caddy from Debian's packages,
in front of busybox httpd (a service in no Python), all on loopback.

The proxies run the recipes of deploy/forward-auth/ as they are, with only the addresses
changed to this machine's ports, so a recipe that stops working fails a test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.requirements import unavailable
from tests.support.server import free_port

RECIPES = Path(__file__).resolve().parents[2] / "deploy" / "forward-auth"
# The names the recipes give the token server and the protected service.
TOKENS_ADDRESS = "oauth-tokens:8080"
APP_ADDRESS = "app:8080"

# A CGI program that shows what reached the service: its own name and the identity headers.
WHOAMI = """#!/bin/sh
printf 'Content-Type: text/plain\\r\\n\\r\\n'
printf 'upstream=busybox\\nclient_id=%s\\nscope=%s\\naudience=%s\\n' \\
  "$HTTP_X_AUTH_CLIENT_ID" "$HTTP_X_AUTH_SCOPE" "$HTTP_X_AUTH_AUDIENCE"
"""
WHOAMI_PATH = "/cgi-bin/whoami"


def require(binary: str, package: str) -> str:
    """The path of ``binary``, or ``unavailable`` naming the Debian package to install."""
    found = shutil.which(binary) or next(
        (p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}") if os.access(p, os.X_OK)), None
    )
    if found is None:
        unavailable(f"{binary} is not installed (apt-get install {package}; see .ci/packages.sh)")
    return found


@dataclass
class Process:
    """A started program listening on ``port`` on loopback."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_listening(self, timeout: float = 20.0) -> None:
        """Return once the port accepts connections; fail with the log otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.name} is not listening on {self.port}:\n{self.log()}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(
    name: str, cmd: list[str], port: int, workdir: Path, env: Mapping[str, str] | None = None
) -> Process:
    """Start ``cmd`` with its output in ``workdir/NAME.log`` and wait for its port."""
    log_path = workdir / f"{name}.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    process = Process(name, port, proc, log_path)
    try:
        process.wait_listening()
    except AssertionError:
        process.stop()
        raise
    return process


def recipe(name: str, tokens_url: str, upstream_url: str) -> str:
    """A recipe of deploy/forward-auth/ aimed at this machine's token server and upstream."""
    text = (RECIPES / name).read_text()
    for address in (TOKENS_ADDRESS, APP_ADDRESS):
        assert address in text, f"{name} no longer names {address}"
    return text.replace(TOKENS_ADDRESS, tokens_url.removeprefix("http://")).replace(
        APP_ADDRESS, upstream_url.removeprefix("http://")
    )


def start_upstream(workdir: Path) -> Process:
    """busybox httpd serving ``WHOAMI_PATH``."""
    busybox = require("busybox", "busybox")
    root = workdir / "upstream"
    (root / "cgi-bin").mkdir(parents=True)
    script = root / "cgi-bin" / "whoami"
    script.write_text(WHOAMI)
    script.chmod(0o755)
    port = free_port()
    cmd = [busybox, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(root)]
    return start("busybox-httpd", cmd, port, workdir)


def start_nginx(workdir: Path, tokens_url: str, upstream_url: str) -> Process:
    """nginx with deploy/forward-auth/nginx.conf as its only server."""
    nginx = require("nginx", "nginx")
    prefix = workdir / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    port = free_port()
    site = recipe("nginx.conf", tokens_url, upstream_url).replace(
        "listen 8080;", f"listen 127.0.0.1:{port};"
    )
    (prefix / "site.conf").write_text(site)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / 'tmp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    # As root, workers would run as nobody, who cannot enter pytest's private directories.
    user = "user root;" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"""daemon off;
{user}
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log {prefix / "access.log"};
{temp_paths}
    include {prefix / "site.conf"};
}}
"""
    )
    cmd = [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-e", "stderr"]
    return start("nginx", cmd, port, workdir)


def start_caddy(workdir: Path, tokens_url: str, upstream_url: str) -> Process:
    """Caddy with deploy/forward-auth/Caddyfile as its only site, without its admin API."""
    caddy = require("caddy", "caddy")
    home = workdir / "caddy"
    home.mkdir()
    port = free_port()
    site = recipe("Caddyfile", tokens_url, upstream_url).replace(
        ":8080 {", f"http://127.0.0.1:{port} {{"
    )
    config = home / "Caddyfile"
    config.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + site)
    cmd = [caddy, "run", "--config", str(config), "--adapter", "caddyfile"]
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    return start("caddy", cmd, port, workdir, env)


PROXIES = {"nginx": start_nginx, "caddy": start_caddy}
