"""A token server that service containers can reach, ``swarm-oauth registrar`` processes
beside it, and the helpers the registrar's real-swarm tests share: what a service ended up
with, a token from its container, the registrar's counted writes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.server import ServerProcess, free_port
from tests.support.swarm import (
    create_service,
    exec_in,
    running_container,
    unique_name,
    wait_for,
)

SELECTOR_KEY = "swarm-oauth.client"
TARGET = "oauth_client_secret"

# Run inside a service's container: read the mounted secret, ask the token endpoint the
# environment names, print the access token. Only the standard library is needed.
TOKEN_SCRIPT = """
import json, os, urllib.parse, urllib.request
secret = open(os.environ["OAUTH_CLIENT_SECRET_FILE"]).read()
form = urllib.parse.urlencode({"grant_type": "client_credentials",
    "client_id": os.environ["OAUTH_CLIENT_ID"], "client_secret": secret}).encode()
with urllib.request.urlopen(os.environ["OAUTH_TOKEN_URL"], form, timeout=10) as response:
    print(json.load(response)["access_token"])
"""


def gateway(client: docker.DockerClient) -> str:
    """The host's address as service containers see it (docker_gwbridge's gateway)."""
    try:
        config = client.networks.get("docker_gwbridge").attrs["IPAM"]["Config"]
        return str(config[0]["Gateway"])
    except (docker.errors.NotFound, KeyError, IndexError):
        return "172.18.0.1"


@dataclass
class Identity:
    """What a service ended up with: its client record and its Docker secret."""

    client: dict[str, Any]
    secret: dict[str, Any]


@dataclass
class Rig:
    """One token server (reachable from containers) and this session's selector."""

    docker: docker.DockerClient
    server: ServerProcess
    selector_value: str
    token_url: str

    @property
    def clients_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def selector(self) -> str:
        return f"{SELECTOR_KEY}={self.selector_value}"

    def labels(self, **extra: str) -> dict[str, str]:
        """Labels that select a service for this session's registrar."""
        return {SELECTOR_KEY: self.selector_value, **extra}

    def service(self, prefix: str, labels: dict[str, str] | None = None, **kwargs: Any) -> str:
        """Create a service; its name."""
        name = unique_name(prefix)
        create_service(self.docker, name, self.labels() if labels is None else labels, **kwargs)
        return name

    def client(self, client_id: str) -> dict[str, Any] | None:
        with self.server.admin() as admin:
            response = admin.get(f"/api/clients/{client_id}")
        return response.json() if response.status_code == 200 else None

    def secrets_of(self, service_id: str) -> list[dict[str, Any]]:
        """Docker secrets the registrar made for a service id."""
        return self.docker.api.secrets(filters={"label": [f"swarm-oauth.service-id={service_id}"]})

    def secrets_of_client(self, client_id: str) -> list[dict[str, Any]]:
        return self.docker.api.secrets(filters={"label": [f"swarm-oauth.client-id={client_id}"]})

    def identity(
        self,
        name: str,
        client_id: str | None = None,
        timeout: float = 30,
        file: dict[str, Any] | None = None,
    ) -> Identity:
        """Wait until ``name`` is converged, its secret mounted as ``file`` (default: the
        registrar's, root-owned 0444); what it has then."""
        client_id = client_id or name
        file = file or {"Name": TARGET, "UID": "0", "GID": "0", "Mode": 0o444}
        state: dict[str, Any] = {}

        def converged() -> Identity | None:
            spec = self.docker.api.inspect_service(name)
            service_id = spec["ID"]
            container = spec["Spec"]["TaskTemplate"]["ContainerSpec"]
            client = self.client(client_id)
            secrets = self.secrets_of(service_id)
            state.update(client=client, secrets=secrets, container=container)
            if client is None or len(secrets) != 1:
                return None
            secret = secrets[0]
            labels = secret["Spec"]["Labels"]
            refs = [r for r in container.get("Secrets") or [] if r["SecretID"] == secret["ID"]]
            env = container.get("Env") or []
            ok = (
                client["metadata"].get("service_id") == service_id
                and labels["swarm-oauth.client-id"] == client_id
                and labels["swarm-oauth.secret-version"] == str(client["secret_version"])
                and [r["File"] for r in refs] == [file]
                and f"OAUTH_CLIENT_ID={client_id}" in env
                and f"OAUTH_TOKEN_URL={self.token_url}" in env
                and f"OAUTH_CLIENT_SECRET_FILE=/run/secrets/{TARGET}" in env
            )
            return Identity(client, secret) if ok else None

        return wait_for(converged, timeout, 0.3, lambda: f"{name} not converged: {state}")

    def secret_in_container(self, name: str) -> str:
        """The secret file's content, from a running container that has it."""

        def read() -> str | None:
            container = running_container(self.docker, name)
            code, output = exec_in(container, ["cat", f"/run/secrets/{TARGET}"])
            return output if code == 0 and output else None

        return wait_for(read, 60, 0.5, f"no container of {name} has the secret")

    def token_from_container(
        self, name: str, jwks_url: str | None = None, audience: str | None = None
    ) -> dict[str, Any]:
        """Claims of a token the service's container obtained with its mounted secret from
        the token endpoint its environment names, verified with the JWKS at ``jwks_url``
        (default: this rig's server's), and for ``audience`` if given."""

        def fetch() -> str | None:
            self.secret_in_container(name)
            container = running_container(self.docker, name)
            code, output = exec_in(container, ["python3", "-c", TOKEN_SCRIPT])
            return output.strip() if code == 0 else None

        token = wait_for(fetch, 60, 0.5, f"{name} could not obtain a token")
        jwks = jwt.PyJWKClient(jwks_url or f"{self.clients_url}/.well-known/jwks.json")
        key = jwks.get_signing_key_from_jwt(token).key
        checks = {"audience": audience} if audience else {"options": {"verify_aud": False}}
        return dict(jwt.decode(token, key, algorithms=["ES256"], **checks))


@contextlib.contextmanager
def open_rig(docker_client: docker.DockerClient, run_id: str, data_dir: Path) -> Iterator[Rig]:
    """A token server on all interfaces (so containers reach it) and this run's selector."""
    port = free_port()
    host = gateway(docker_client)
    server = ServerProcess(
        data_dir=data_dir, host="0.0.0.0", port=port, args=("--issuer", f"http://{host}:{port}")
    )
    server.start()
    try:
        yield Rig(docker_client, server, run_id, f"http://{host}:{port}/api/token")
    finally:
        server.stop()


# What Go's http.DefaultClient sends with swarm-listener's requests (section 2).
GO_GET = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
GO_POST = {**GO_GET, "Content-Length": "0"}


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

    def api(self, method: str, path: str, admin_token: str) -> httpx.Response:
        """A request to the registrar's API with the admin token."""
        return self.api_json(method, path, admin_token, None)

    def api_json(self, method: str, path: str, admin_token: str, body: Any) -> httpx.Response:
        """A request to the registrar's API with the admin token and a JSON body."""
        headers = {"Authorization": f"Bearer {admin_token}"}
        return httpx.request(method, f"{self.url}{path}", json=body, headers=headers, timeout=300)

    def services(self, admin_token: str) -> dict[str, dict[str, Any]]:
        """``GET /v1/services``, by service name."""
        response = self.api("GET", "/v1/services", admin_token)
        response.raise_for_status()
        return {s["service_name"]: s for s in response.json()["services"]}

    def full_pass(self, admin_token: str) -> dict[str, int]:
        """``POST /v1/reconcile``: a full pass, and its outcomes."""
        response = self.api("POST", "/v1/reconcile", admin_token)
        response.raise_for_status()
        return dict(response.json()["outcomes"])

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


PERMISSIVE_POLICY = "default: {client_id: ['*'], scopes: ['*'], audiences: ['*']}\n"


@pytest.fixture
def permissive_policy(tmp_path: Path) -> Path:
    """A policy file that allows every label, for tests that are not about the policy."""
    path = tmp_path / "permissive-policy.yml"
    path.write_text(PERMISSIVE_POLICY)
    return path


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


def settled(rig: Rig, names: list[str]) -> dict[str, Any]:
    """Each service's spec and version once no rolling update is in progress."""

    def snapshot() -> dict[str, Any] | None:
        services = {n: rig.docker.api.inspect_service(n) for n in names}
        if any((s.get("UpdateStatus") or {}).get("State") == "updating" for s in services.values()):
            return None
        return {n: (s["Version"], s["Spec"]) for n, s in services.items()}

    return wait_for(snapshot, 60, 0.5, "rolling updates did not finish")
