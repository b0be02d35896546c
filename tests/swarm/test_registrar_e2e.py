"""``swarm-oauth registrar`` as a real process on the real swarm: Docker events, the full
pass, and swarm-listener requests replayed in the exact wire format of docs/swarm-listener.md.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.rig import SELECTOR_KEY, Rig, open_rig
from tests.support.server import free_port
from tests.support.swarm import create_service, unique_name, wait_for

pytestmark = pytest.mark.docker

# What Go's http.DefaultClient sends with swarm-listener's requests (section 2).
GO_GET = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
GO_POST = {**GO_GET, "Content-Length": "0"}


@pytest.fixture(scope="module")
def rig(docker_client: Any, base_image: str, run_id: str, tmp_path_factory: Any) -> Iterator[Rig]:
    """One token server for the whole module."""
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("registrar-e2e")) as opened:
        yield opened


@dataclass
class RegistrarProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``/metrics`` (0 if absent)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def wait_idle(self) -> None:
        """Wait until the work queue has nothing waiting or running."""
        wait_for(
            lambda: self.metric("swarm_oauth_registrar_queue_depth") == 0,
            60,
            0.1,
            "the registrar's work queue did not drain",
        )

    def notify(self, method: str, kind: str, query: str) -> httpx.Response:
        """A swarm-listener notification: everything in the query, no body, no type."""
        headers = GO_POST if method == "POST" else GO_GET
        url = f"{self.url}/v1/swarm-listener/notify-{kind}?{query}"
        return httpx.request(method, url, headers=headers, timeout=60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def start_registrar(rig: Rig, tmp_path: Path) -> Iterator[Callable[..., RegistrarProcess]]:
    """Start ``swarm-oauth registrar`` subprocesses; each is stopped after the test."""
    started: list[RegistrarProcess] = []

    def start(*args: str) -> RegistrarProcess:
        port = free_port()
        log_path = tmp_path / f"registrar-{port}.log"
        cmd = [
            sys.executable, "-m", "swarm_oauth", "registrar",
            "--host", "127.0.0.1", "--port", str(port),
            "--clients-url", rig.clients_url, "--token-url", rig.token_url,
            "--admin-token-file", str(rig.server.data_dir / "admin-token"),
            "--selector", rig.selector, *args,
        ]  # fmt: skip
        with log_path.open("ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        registrar = RegistrarProcess(f"http://127.0.0.1:{port}", proc, log_path)
        started.append(registrar)

        def ready() -> bool:
            assert proc.poll() is None, f"registrar exited:\n{registrar.log()}"
            try:
                return httpx.get(f"{registrar.url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, 30, 0.1, lambda: f"registrar not ready:\n{registrar.log()}")
        # The full pass at start has run once this is set.
        wait_for(
            lambda: registrar.metric("swarm_oauth_registrar_last_full_pass_timestamp_seconds"),
            30,
            0.1,
            "no full pass at start",
        )
        return registrar

    yield start
    for registrar in started:
        registrar.stop()


def writes(registrar: RegistrarProcess) -> dict[str, float]:
    """Docker writes the registrar counted (deletes are checked on the secrets instead,
    since secrets of services other sessions removed may be collected meanwhile)."""
    return {
        kind: registrar.metric("swarm_oauth_registrar_actions_total", kind=kind, outcome="ok")
        for kind in ("create_secret", "update_service")
    }


def test_a_service_gets_its_identity_keeps_it_and_loses_it(rig, start_registrar, swarm_cleanup):
    start_registrar()
    other = rig.labels()
    other[SELECTOR_KEY] = "not-this-session"
    plain = rig.service("e2e-plain", other, env=["A=1"])
    plain_before = rig.docker.api.inspect_service(plain)
    name = rig.service("e2e-svc", rig.labels(**{"swarm-oauth.audience": "billing"}))

    identity = rig.identity(name)  # no hint: the Docker event stream brought it
    claims = rig.token_from_container(name)
    assert (claims["sub"], claims["aud"]) == (name, "billing")

    subprocess.run(
        [
            "docker",
            "service",
            "update",
            "--detach",
            "--secret-rm",
            identity.secret["Spec"]["Name"],
            name,
        ],
        check=True,
        capture_output=True,
    )
    again = rig.identity(name)
    assert again.secret["ID"] == identity.secret["ID"]
    assert again.client["secret_version"] == identity.client["secret_version"]

    service_id = identity.client["metadata"]["service_id"]
    rig.docker.api.remove_service(name)
    wait_for(
        lambda: rig.client(name) is None and not rig.secrets_of(service_id),
        30,
        0.3,
        "client or Docker secret left after the service was removed",
    )
    plain_after = rig.docker.api.inspect_service(plain)
    assert plain_after["Spec"] == plain_before["Spec"]
    assert plain_after["Version"] == plain_before["Version"]
    assert rig.client(plain) is None and not rig.secrets_of(plain_before["ID"])


def test_swarm_listener_notifications(rig, start_registrar, swarm_cleanup):
    # No events and no periodic pass: only the notifications act.
    registrar = start_registrar("--no-events", "--resync-seconds", "3600")
    name = rig.service("e2e-dfsl", rig.labels(**{"com.df.notify": "true"}))
    service_id = rig.docker.api.inspect_service(name)["ID"]
    assert rig.client(name) is None

    create = f"distribute=true&oauthScopes=read%2Cwrite&replicas=1&serviceName={name}"
    response = registrar.notify("GET", "create", create)
    # 200 once queued: swarm-listener counts nothing else as delivered.
    assert response.status_code == 200
    assert response.json()["queued"] == [f"service:{service_id}"]
    identity = rig.identity(name)
    registrar.wait_idle()
    version = rig.docker.api.inspect_service(name)["Version"]

    before = writes(registrar)
    for method in ("GET", "POST", "POST"):  # duplicates, as swarm-listener sends them
        assert registrar.notify(method, "create", create).status_code == 200
    # A forged remove for a live service removes nothing.
    response = registrar.notify("GET", "remove", f"distribute=true&serviceName={name}")
    assert response.status_code == 200
    registrar.wait_idle()
    assert rig.identity(name, timeout=1).secret["ID"] == identity.secret["ID"]
    assert writes(registrar) == before
    assert rig.docker.api.inspect_service(name)["Version"] == version

    # A remove for a service nobody knows: 200, or swarm-listener retries for minutes.
    for method in ("GET", "POST"):
        response = registrar.notify(method, "remove", f"distribute=true&serviceName=ghost-{name}")
        assert (response.status_code, response.json()["queued"]) == (200, [])
    # A forged create for an unselected service creates nothing.
    other = rig.labels()
    other[SELECTOR_KEY] = "not-this-session"
    plain = rig.service("e2e-dfsl-plain", other)
    plain_spec = rig.docker.api.inspect_service(plain)
    response = registrar.notify("POST", "create", f"distribute=true&replicas=1&serviceName={plain}")
    assert response.status_code == 200
    registrar.wait_idle()
    assert rig.docker.api.inspect_service(plain)["Version"] == plain_spec["Version"]
    assert rig.client(plain) is None

    # A stack service under shortName, with a token in the configured URL, URL-encoded
    # JSON and commas; Docker's name is <stack>_<service>.
    stack = f"st{name.rsplit('-', 1)[-1]}"
    short = unique_name("orders")
    full = f"{stack}_{short}"
    create_service(
        rig.docker,
        full,
        rig.labels(**{"com.docker.stack.namespace": stack, "com.df.shortName": "true"}),
    )
    query = (
        "token=s3cr3t&distribute=true&nodeInfo=%5B%5B%22node-1%22%2C%2210.0.1.5%22%2C%22n1id"
        f"%22%5D%5D&oauthScopes=read%2Cwrite&replicas=1&serviceName={short}&shortName=true"
    )
    assert registrar.notify("GET", "create", query).status_code == 200
    stack_identity = rig.identity(full)

    # The real removes: the identity goes with the service.
    rig.docker.api.remove_service(name)
    rig.docker.api.remove_service(full)
    response = registrar.notify("POST", "remove", f"distribute=true&serviceName={name}")
    assert response.status_code == 200 and response.json()["queued"]
    response = registrar.notify(
        "GET", "remove", f"distribute=true&serviceName={short}&shortName=true"
    )
    assert response.status_code == 200 and response.json()["queued"]
    for client_id, found in ((name, identity), (full, stack_identity)):
        wait_for(
            lambda c=client_id, f=found: (
                rig.client(c) is None and not rig.secrets_of(f.client["metadata"]["service_id"])
            ),
            30,
            0.3,
            f"{client_id}: client or Docker secret left after the remove",
        )

    response = registrar.notify("GET", "create", "distribute=true")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"
    # Unauthenticated, so it must not steer the Docker SDK to another endpoint (/info).
    response = registrar.notify("GET", "remove", "serviceName=..%2F..%2Finfo")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def settled(rig: Rig, names: list[str]) -> dict[str, Any]:
    """Each service's spec and version once no rolling update is in progress."""

    def snapshot() -> dict[str, Any] | None:
        services = {n: rig.docker.api.inspect_service(n) for n in names}
        if any((s.get("UpdateStatus") or {}).get("State") == "updating" for s in services.values()):
            return None
        return {n: (s["Version"], s["Spec"]) for n, s in services.items()}

    return wait_for(snapshot, 60, 0.5, "rolling updates did not finish")


def test_twenty_services_at_once(rig, start_registrar, swarm_cleanup):
    registrar = start_registrar()
    names = [unique_name("e2e-many") for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: create_service(rig.docker, n, rig.labels()), names))

    identities = {n: rig.identity(n, timeout=120) for n in names}
    for name in names:
        secret = rig.secret_in_container(name)
        response = rig.server.token(name, secret)
        assert response.status_code == 200, response.text
    service_ids = [i.client["metadata"]["service_id"] for i in identities.values()]

    def secret_ids() -> set[str]:
        return {s["ID"] for sid in service_ids for s in rig.secrets_of(sid)}

    before = (settled(rig, names), secret_ids(), writes(registrar))
    assert len(before[1]) == 20
    response = httpx.post(f"{registrar.url}/v1/reconcile", timeout=120)
    assert response.status_code == 200
    outcomes = response.json()["outcomes"]
    assert outcomes["unchanged"] == 20 and "changed" not in outcomes, outcomes
    assert (settled(rig, names), secret_ids(), writes(registrar)) == before
