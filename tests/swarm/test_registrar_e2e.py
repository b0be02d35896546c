"""``swarm-oauth registrar`` as a real process on the real swarm: Docker events, the full
pass, and swarm-listener requests replayed in the exact wire format of docs/swarm-listener.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.relay import SocketRelay
from tests.support.rig import SELECTOR_KEY, Rig, open_rig, settled, writes
from tests.support.swarm import create_service, unique_name, wait_for

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def rig(docker_client: Any, base_image: str, run_id: str, tmp_path_factory: Any) -> Iterator[Rig]:
    """One token server for the whole module."""
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("registrar-e2e")) as opened:
        yield opened


def test_a_service_gets_its_identity_keeps_it_and_loses_it(
    rig, start_registrar, permissive_policy, swarm_cleanup
):
    start_registrar("--policy", str(permissive_policy))
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
    # The forced pass as an operator asks for it (docs/troubleshooting.md), the admin
    # token found where the server keeps it.
    result = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "reconcile", "--output", "json",
         "--url", registrar.url],
        capture_output=True, text=True, check=False, timeout=300,
        env={**os.environ, "SWARM_OAUTH_DATA_DIR": str(rig.server.data_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout)["outcomes"]
    assert outcomes["unchanged"] == 20 and "changed" not in outcomes, outcomes
    assert (settled(rig, names), secret_ids(), writes(registrar)) == before


def test_the_health_check_follows_whether_docker_answers(rig, start_registrar, swarm_cleanup):
    # The image's HEALTHCHECK (python -m swarm_oauth.healthcheck) probes /healthz: a
    # registrar that cannot reach Docker must turn unhealthy, and healthy again after.
    relay = SocketRelay(Path(tempfile.mkdtemp(prefix="so-relay-")) / "docker.sock")
    relay.start()
    registrar = start_registrar("--docker-host", relay.url, "--resync-seconds", "3600")
    probe_env = {**os.environ, "SWARM_OAUTH_PORT": str(httpx.URL(registrar.url).port)}

    def healthcheck() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swarm_oauth.healthcheck"],
            env=probe_env, capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip

    def health() -> httpx.Response:
        return httpx.get(f"{registrar.url}/healthz", timeout=10)

    assert health().status_code == 200 and healthcheck().returncode == 0
    relay.cut()
    try:
        down = wait_for(lambda: (r := health()).status_code == 503 and r, 30, 0.2, "still healthy")
        assert down.json()["status"] == "unhealthy"
        assert down.json()["reason"].startswith("docker: ")
        assert healthcheck().returncode == 1
    finally:
        relay.start()
    wait_for(lambda: health().status_code == 200, 30, 0.2, "not healthy again")
    assert healthcheck().returncode == 0
    relay.cut()
