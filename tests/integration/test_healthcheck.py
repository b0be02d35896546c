"""The image's health check (``python -m swarm_oauth.healthcheck``) against real servers:
healthy over HTTP and over HTTPS with a certificate it does not check, unhealthy when
nothing answers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import trustme

from tests.support.server import free_port


def probe(port: int, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_OAUTH_")}
    return subprocess.run(
        [sys.executable, "-m", "swarm_oauth.healthcheck"],
        env={**clean, "SWARM_OAUTH_PORT": str(port), **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_healthy_over_http(token_server):
    assert probe(token_server.port).returncode == 0


def test_healthy_over_https_whatever_the_certificate_names(server_factory, tmp_path: Path):
    # A certificate for the service's name, not for the loopback address the probe uses.
    cert = trustme.CA().issue_cert("oauth-tokens")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    for index, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(cert_file), append=index > 0)
    cert.private_key_pem.write_to_path(str(key_file))
    tls = {"SWARM_OAUTH_TLS_CERT_FILE": str(cert_file), "SWARM_OAUTH_TLS_KEY_FILE": str(key_file)}
    server = server_factory(env=tls, scheme="https", verify=False)
    assert probe(server.port, **tls).returncode == 0
    assert probe(server.port).returncode == 1  # plain HTTP to an HTTPS listener


def test_unhealthy_when_nothing_answers():
    result = probe(free_port())
    assert result.returncode == 1
    assert result.stderr.startswith("unhealthy: ")
