"""deploy/stack.yml with deploy/stack.postgres.yml, deployed on the multi-node cluster
(tests/support/multinode.py) for tests/multinode/.

The files are merged by ``docker stack config`` into one, in which the overlays' encryption
is set one way or the other explicitly: an override cannot turn it off (Docker encrypts a
network whose options hold the key ``encrypted``, whatever its value), so the merged file
is what is deployed. Objects inside the cluster go with it; a deployment is removed with
``docker stack rm`` when it is closed all the same, for a second one beside it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docker.models.containers import Container
from docker.types import EndpointSpec, Healthcheck

from tests.support.deploy import (
    DEPLOY_DIR,
    STACK_FILE,
    docker_cli,
    exec_json,
    registrar_secrets,
    stack_config,
)
from tests.support.multinode import ENGINE_ERRORS, Cluster, Node
from tests.support.swarm import LABEL, wait_for

POSTGRES_STACK_FILE = DEPLOY_DIR / "stack.postgres.yml"
ISSUER = "http://oauth-tokens:8080"

# Run in a server container: whether it is ready (its own /readyz).
READY = """
import json, os, httpx
port = os.environ.get("SWARM_OAUTH_PORT", "8080")
try:
    status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
except httpx.HTTPError as exc:
    status = type(exc).__name__
print(json.dumps(status))
"""

# Run in the oauth-clients container, which holds the admin token.
LIST_CLIENTS = """
import json, pathlib, httpx
token = pathlib.Path("/run/secrets/swarm-oauth-admin-token").read_text().strip()
r = httpx.get("http://127.0.0.1:8080/api/clients",
              headers={"Authorization": "Bearer " + token}, timeout=5)
r.raise_for_status()
print(json.dumps(r.json()["clients"]))
"""


def set_encryption(config: dict[str, Any], encrypted: bool) -> dict[str, Any]:
    """``config`` (a merged stack) with every overlay it defines encrypted, or none."""
    for spec in (config.get("networks") or {}).values():
        if not spec or spec.get("external") or spec.get("driver") != "overlay":
            continue
        options = {k: v for k, v in (spec.get("driver_opts") or {}).items() if k != "encrypted"}
        if encrypted:
            options["encrypted"] = ""
        spec.pop("driver_opts", None)
        if options:
            spec["driver_opts"] = options
    return config


@dataclass
class Deployment:
    """deploy/stack.yml with deploy/stack.postgres.yml, deployed on the cluster."""

    cluster: Cluster
    stack: str
    public_network: str
    selector: str

    def service(self, name: str) -> str:
        """The full name of the stack's service ``name``."""
        return f"{self.stack}_{name}"

    def container(self, name: str, timeout: float = 90) -> tuple[Node, Container]:
        """The node and container of the stack's service ``name``."""
        return self.cluster.container(self.service(name), timeout)

    def clients(self) -> dict[str, dict[str, Any]]:
        """The clients API's records by client id, asked inside oauth-clients; waits while
        it cannot answer (rescheduled, or its database away)."""

        def listed() -> list[dict[str, Any]] | None:
            with contextlib.suppress(AssertionError, *ENGINE_ERRORS):
                records: list[dict[str, Any]] = exec_json(
                    self.container("oauth-clients")[1], LIST_CLIENTS
                )
                return records
            return None

        records = wait_for(listed, 180, 1.0, "the clients API never answered")
        return {record["client_id"]: record for record in records}

    def create_app(
        self, name: str, constraints: list[str] | None = None, managed: bool = True
    ) -> str:
        """An idle service (the tests run code in its task) on the public network and,
        unless told otherwise, on the workers, ``managed`` by the registrar or not; its id."""
        key, _, value = self.selector.partition("=")
        labels = {LABEL: self.cluster.run_id, **({key: value} if managed else {})}
        service = self.cluster.retry(
            lambda: self.cluster.client.services.create(
                self.cluster.image,
                command=["sleep", "infinity"],
                name=name,
                labels=labels,
                networks=[self.public_network],
                endpoint_spec=EndpointSpec(mode="dnsrr"),
                constraints=constraints or ["node.role == worker"],
                init=True,
                # The image's health check asks a server that an idle task does not run.
                healthcheck=Healthcheck(test=["NONE"]),
            )
        )
        return str(service.id)

    def identity(self, name: str, timeout: float = 90) -> dict[str, Any]:
        """Service ``name``'s client and the ids of the registrar's Docker secrets mounted
        in its spec, once both exist."""

        def registered() -> dict[str, Any] | None:
            service = self.cluster.client.services.get(name)
            refs = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
            made = {s.id for s in registrar_secrets(self.cluster.client, [service.id])}
            mounted = sorted({ref["SecretID"] for ref in refs} & made)
            record = self.clients().get(name)
            return {"client": record, "secrets": mounted} if mounted and record else None

        return wait_for(
            lambda: self.cluster.retry(registered), timeout, 0.5, f"{name} never got its identity"
        )


def _ready(cluster: Cluster, service: str, replicas: int) -> bool:
    tasks = cluster.running_tasks(service)
    if len({task["NodeID"] for task in tasks}) < replicas:
        return False
    with contextlib.suppress(*ENGINE_ERRORS, AssertionError):
        return all(
            exec_json(cluster.task_container(task)[1], READY) == 200 for task in tasks[:replicas]
        )
    return False


def _gather_servers(config: dict[str, Any], node: Node) -> None:
    """Put the servers and the database of ``config`` on ``node``, with no registrar and
    one token replica: only what callers elsewhere send crosses to another node."""
    services = config["services"]
    services["registrar"]["deploy"]["replicas"] = 0
    services["oauth-tokens"]["deploy"]["replicas"] = 1
    for name in ("oauth-clients", "oauth-tokens", "postgres"):
        services[name]["deploy"]["placement"] = {"constraints": [f"node.id == {node.node_id}"]}


@contextlib.contextmanager
def open_deployment(
    cluster: Cluster, tmp: Path, stack: str, encrypted: bool, servers_on: Node | None = None
) -> Iterator[Deployment]:
    """Deploy the stack as ``stack``, its overlays ``encrypted`` or not, and wait until
    every part is ready. ``servers_on``: a second deployment beside the first, its servers
    and database on that node and without a registrar (two registrars on one swarm would
    each take away what the other made). Removed on the way out."""
    password = secrets.token_urlsafe(24)
    values = {
        "master-key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "admin-token": secrets.token_urlsafe(32),
        "postgres-password": password,
        "database-url": f"postgresql://swarm_oauth:{password}@postgres:5432/swarm_oauth",
    }
    for kind, value in values.items():
        cluster.retry(
            lambda k=kind, v=value: cluster.client.secrets.create(name=f"{stack}-{k}", data=v)
        )
    deployment = Deployment(cluster, stack, f"{stack}-public", f"swarm-oauth.client={stack}")
    variables = {
        "SWARM_OAUTH_IMAGE": cluster.image,
        "SWARM_OAUTH_POSTGRES_IMAGE": cluster.postgres_image,
        "SWARM_OAUTH_MASTER_KEY_SECRET": f"{stack}-master-key",
        "SWARM_OAUTH_ADMIN_TOKEN_SECRET": f"{stack}-admin-token",
        "SWARM_OAUTH_POSTGRES_PASSWORD_SECRET": f"{stack}-postgres-password",
        "SWARM_OAUTH_DATABASE_URL_SECRET": f"{stack}-database-url",
        "SWARM_OAUTH_PUBLIC_NETWORK": deployment.public_network,
        "SWARM_OAUTH_SELECTOR": deployment.selector,
        "SWARM_OAUTH_TOKENS_REPLICAS": "2",
    }
    config = set_encryption(stack_config(STACK_FILE, POSTGRES_STACK_FILE, env=variables), encrypted)
    if servers_on is not None:
        _gather_servers(config, servers_on)
    merged = tmp / f"{stack}.json"
    merged.write_text(json.dumps(config, indent=2))  # JSON is YAML
    try:
        docker_cli(
            "stack",
            "deploy",
            "--resolve-image",
            "never",
            "-c",
            str(merged),
            stack,
            env=cluster.cli_env(),
        )
        for name, spec in config["services"].items():
            replicas = spec["deploy"]["replicas"]
            if name != "postgres" and replicas:  # the servers are ready only with it
                wait_for(
                    lambda n=name, r=replicas: _ready(cluster, deployment.service(n), r),
                    180,
                    1.0,
                    f"{deployment.service(name)} never was ready",
                )
        yield deployment
    finally:
        with contextlib.suppress(AssertionError):
            docker_cli("stack", "rm", stack, env=cluster.cli_env())
