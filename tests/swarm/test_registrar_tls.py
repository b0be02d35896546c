"""The registrar over TLS, both ways, with a throwaway CA (trustme): its own endpoints
served over HTTPS (``--tls-cert-file``), and a clients API reached over HTTPS and checked
against ``--ca-bundle`` only."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import trustme
from prometheus_client.parser import text_string_to_metric_families

from swarm_oauth.admin_client import AdminClient, ca_context
from tests.support.observability import exported, named_metrics
from tests.support.rig import SELECTOR_KEY
from tests.support.server import ServerProcess, free_port
from tests.support.swarm import create_service, unique_name, wait_for, with_test_label

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: Any) -> dict[str, Path]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    where = tmp_path_factory.mktemp("tls")
    files = {"ca": where / "ca.pem", "cert": where / "cert.pem", "key": where / "key.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for index, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(files["cert"]), append=index > 0)
    cert.private_key_pem.write_to_path(str(files["key"]))
    return files


@pytest.fixture(scope="module")
def https_server(tls_files: dict[str, Path], tmp_path_factory: Any) -> Iterator[ServerProcess]:
    server = ServerProcess(
        data_dir=tmp_path_factory.mktemp("tls-server"),
        env={
            "SWARM_OAUTH_TLS_CERT_FILE": str(tls_files["cert"]),
            "SWARM_OAUTH_TLS_KEY_FILE": str(tls_files["key"]),
        },
        scheme="https",
        verify=ca_context(tls_files["ca"]),
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def registrar(
    https_server: ServerProcess, tls_files: dict[str, Path], run_id: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[str, subprocess.Popen[bytes], Path]]]:
    """Start ``swarm-oauth registrar`` over HTTPS against the HTTPS clients API."""
    started: list[subprocess.Popen[bytes]] = []

    def start(*extra: str) -> tuple[str, subprocess.Popen[bytes], Path]:
        port = free_port()
        log = tmp_path / f"registrar-{port}.log"
        cmd = [
            sys.executable, "-m", "swarm_oauth", "registrar",
            "--host", "127.0.0.1", "--port", str(port),
            "--clients-url", https_server.url, "--token-url", f"{https_server.url}/api/token",
            "--admin-token-file", str(https_server.data_dir / "admin-token"),
            "--selector", f"{SELECTOR_KEY}={run_id}-tls",
            "--tls-cert-file", str(tls_files["cert"]), "--tls-key-file", str(tls_files["key"]),
            *extra,
        ]  # fmt: skip
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        started.append(proc)
        url = f"https://127.0.0.1:{port}"

        def listening() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"{url}/healthz", verify=ca_context(tls_files["ca"]), timeout=2)
            except httpx.TransportError:
                return False
            return True

        wait_for(listening, 30, 0.2, lambda: f"registrar not listening:\n{log.read_text()}")
        return url, proc, log

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(15)


def cli(*args: str, token_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", *args,
         "--admin-token-file", str(token_file)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_the_registrar_serves_https_and_registers_over_https(
    docker_client: docker.DockerClient,
    https_server,
    tls_files,
    registrar,
    run_id,
    swarm_cleanup,
):
    url, _, log = registrar("--ca-bundle", str(tls_files["ca"]), "--log-format", "text")
    ready = httpx.get(f"{url}/readyz", verify=ca_context(tls_files["ca"]), timeout=10)
    assert ready.status_code == 200, ready.text
    name = unique_name("tls-svc")
    create_service(docker_client, name, with_test_label({SELECTOR_KEY: f"{run_id}-tls"}))

    def registered() -> bool:
        with AdminClient(
            https_server.url, https_server.admin_token, ca_bundle=tls_files["ca"]
        ) as admin:
            return admin.get(name) is not None

    wait_for(registered, 60, 0.3, f"{name} was not registered over HTTPS")

    token_file = https_server.data_dir / "admin-token"
    shown = cli("status", "--url", url, "--ca-bundle", str(tls_files["ca"]), "-o", "json",
                token_file=token_file)  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert name in {s["service_name"] for s in json.loads(shown.stdout)["services"]}
    table = cli("status", "--url", url, "--ca-bundle", str(tls_files["ca"]), "-o", "table",
                token_file=token_file)  # fmt: skip
    assert table.returncode == 0, table.stderr
    head, *rows = table.stdout.splitlines()
    assert head.split() == ["SERVICE", "CLIENT", "STATE", "CONVERGED", "SECRET", "/", "REASON"]
    (row,) = [cells for r in rows if (cells := r.split()) and cells[0] == name]
    assert row[1:3] == [name, "registered"] and row[-1].startswith("oauth-")

    # What a person reads: text lines, no JSON; the registration named in one.
    lines = log.read_text().splitlines()
    assert lines and not any(line.startswith("{") for line in lines)
    assert any(
        re.match(r"\d\d:\d\d:\d\d\.\d{3}Z info +swarm_oauth\.registrar\.", line)
        and f"service {name}: added client {name}" in line
        for line in lines
    ), "\n".join(lines)

    # What Prometheus scrapes from the real process: the states, no _created series, and
    # every registrar metric the alert rules and the dashboard use.
    scraped = httpx.get(f"{url}/metrics", verify=ca_context(tls_files["ca"]), timeout=10).text
    assert "_created" not in scraped
    registered = [
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "swarm_oauth_registrar_services"
        and sample.labels.get("state") == "registered"
    ]
    assert registered and registered[0] >= 1
    wanted = {n for n in named_metrics() if n.startswith("swarm_oauth_registrar_")}
    assert sorted(wanted - exported(scraped)) == []
    untrusted = cli("status", "--url", url, token_file=token_file)
    assert untrusted.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_a_registrar_that_does_not_trust_the_server_is_not_ready(registrar, tls_files):
    url, _, _ = registrar()  # no --ca-bundle: the system's CAs, which never signed it
    ready = httpx.get(f"{url}/readyz", verify=ca_context(tls_files["ca"]), timeout=30)
    assert ready.status_code == 503
    assert "client registry" in ready.json()["reason"]
    assert "CERTIFICATE_VERIFY_FAILED" in ready.json()["reason"]


def test_an_unusable_ca_bundle_stops_the_registrar_with_a_reason(https_server, tmp_path):
    bogus = tmp_path / "not-a-ca.pem"
    bogus.write_text("not a certificate\n")
    result = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar",
         "--clients-url", https_server.url, "--token-url", "https://x/api/token",
         "--admin-token-file", str(https_server.data_dir / "admin-token"),
         "--ca-bundle", str(bogus)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "--ca-bundle" in result.stderr and "Traceback" not in result.stderr
