"""Client secrets renew themselves on the real swarm, and no running service notices.

A service with two replicas, rolled out start-first, asks for a token every 200 ms from each
container and logs every answer. Its secret is rotated by age (a short maximum on its
label) and on demand (`swarm-oauth registrar rotate`); every answer in every container's log
must be a success, one Docker secret must be left attached, and the old client secret must
stop working once its grace is over.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import docker
import pytest

from tests.support.rig import Rig, open_rig
from tests.support.swarm import wait_for

pytestmark = pytest.mark.docker

SERVICE_ID_LABEL = "com.docker.swarm.service.id"
GRACE = "30s"

# Waits for the secret file (as the SDK does), then asks for a token every 200 ms with
# whatever the file holds now, and logs each answer as a JSON line.
REQUESTER = """
import json, os, time, urllib.error, urllib.parse, urllib.request
path = os.environ["OAUTH_CLIENT_SECRET_FILE"]
while not os.path.exists(path):
    time.sleep(0.1)
while True:
    secret = open(path).read().strip()
    form = urllib.parse.urlencode({"grant_type": "client_credentials",
        "client_id": os.environ["OAUTH_CLIENT_ID"], "client_secret": secret}).encode()
    try:
        with urllib.request.urlopen(os.environ["OAUTH_TOKEN_URL"], form, timeout=5) as r:
            status = r.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except Exception as exc:
        status = type(exc).__name__
    print(json.dumps({"t": time.time(), "status": status}), flush=True)
    time.sleep(0.2)
"""


@pytest.fixture(scope="module")
def rig(docker_client: Any, base_image: str, run_id: str, tmp_path_factory: Any) -> Iterator[Rig]:
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("rotation")) as opened:
        yield opened


def answers(client: docker.DockerClient, service_id: str) -> list[Any]:
    """Every answer every container of the service logged, running or stopped."""
    containers = client.containers.list(
        all=True, filters={"label": f"{SERVICE_ID_LABEL}={service_id}"}, ignore_removed=True
    )
    found = []
    for container in containers:
        for line in container.logs().decode(errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line)["status"])
    return found


def test_a_secret_rotates_by_age_and_on_demand_and_no_request_fails(
    rig, start_registrar, swarm_cleanup
):
    registrar = start_registrar("--resync-seconds", "3", "--rotation-grace", GRACE)
    name = rig.service(
        "rot",
        # Long enough that the on-demand secret below is not rotated by age again before the
        # test has read its answers, even on a slow machine.
        rig.labels(**{"swarm-oauth.secret-max-age": "45s"}),
        command=["python3", "-c", REQUESTER],
        mode=docker.types.ServiceMode("replicated", replicas=2),
        update_config=docker.types.UpdateConfig(parallelism=2, order="start-first", monitor=1),
    )
    first = rig.identity(name, timeout=60)
    service_id = first.client["metadata"]["service_id"]
    old_secret = rig.secret_in_container(name).strip()
    version = first.client["secret_version"]
    wait_for(lambda: answers(rig.docker, service_id).count(200) >= 10, 60, 0.5, "no answers")

    # By age: the label's 45 s pass, the next full pass rotates it.
    rotated = wait_for(
        lambda: (c := rig.client(name)) and c["secret_version"] > version and c,
        120,
        1.0,
        "the secret was not rotated by age",
    )
    by_age = rig.identity(name, timeout=120)  # one Docker secret again: the old one deleted
    assert by_age.secret["ID"] != first.secret["ID"]
    assert not rig.docker.api.secrets(filters={"id": first.secret["ID"]})
    assert rotated["previous_secret_expires_at"]  # the old secret's grace

    # On demand, from the command line.
    before = rig.client(name)["secret_version"]
    result = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "rotate", name, "--grace", "10m",
         "--url", registrar.url, "--admin-token-file", str(rig.server.data_dir / "admin-token")],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["rotated"] is True and answer["grace_seconds"] == 600
    on_demand = rig.identity(name, timeout=120)
    assert rig.client(name)["secret_version"] > before
    assert on_demand.secret["ID"] not in (first.secret["ID"], by_age.secret["ID"])

    # Let the new tasks answer a while, then read every answer of every container.
    count = len(answers(rig.docker, service_id))
    wait_for(lambda: len(answers(rig.docker, service_id)) > count + 20, 60, 0.5, "no answers")
    logged = answers(rig.docker, service_id)
    assert len(logged) > 100 and set(logged) == {200}, sorted(set(map(str, logged)))
    attached = rig.docker.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert [r["SecretID"] for r in attached["Secrets"]] == [on_demand.secret["ID"]]

    # The first secret's grace is long over: it is refused.
    refused = rig.server.token(name, old_secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_an_emergency_rotation_stops_the_old_secret_at_once(rig, start_registrar, swarm_cleanup):
    registrar = start_registrar("--resync-seconds", "3600")
    name = rig.service("rot-now")
    registrar.full_pass(rig.server.admin_token)
    identity = rig.identity(name)
    leaked = rig.secret_in_container(name).strip()
    assert rig.server.token(name, leaked).status_code == 200
    response = registrar.api_json(
        "POST", f"/v1/services/{name}/rotate", rig.server.admin_token, {"grace_seconds": 0}
    )
    assert response.status_code == 200, response.text
    refused = rig.server.token(name, leaked)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    # The service is rolled onto the new secret, which works.
    fresh = rig.identity(name)
    assert fresh.secret["ID"] != identity.secret["ID"]
    wait_for(lambda: rig.secret_in_container(name).strip() != leaked, 60, 0.5, "not rolled")
    current = rig.secret_in_container(name).strip()
    assert rig.server.token(name, current).status_code == 200

    # The same from the command line: `--grace 0` reaches the registrar as no grace.
    result = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "rotate", name, "--grace", "0",
         "--url", registrar.url, "--admin-token-file", str(rig.server.data_dir / "admin-token")],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["grace_seconds"] == 0
    refused = rig.server.token(name, current)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"


def test_a_rollout_that_stalls_is_rolling_then_stranded_then_registered(
    rig, start_registrar, swarm_cleanup
):
    registrar = start_registrar("--resync-seconds", "2")
    token = rig.server.admin_token
    name = rig.service(
        "rot-stall",
        mode=docker.types.ServiceMode("replicated", replicas=2),
        update_config=docker.types.UpdateConfig(parallelism=1, order="stop-first"),
    )
    rig.identity(name, timeout=60)
    old_secret = rig.secret_in_container(name).strip()
    # From now on an update replaces one task, then waits ten minutes before the next.
    stall = ["docker", "service", "update", "--detach", "--update-delay", "600s", name]
    subprocess.run(stall, check=True, capture_output=True, timeout=60)

    rotated = registrar.api_json("POST", f"/v1/services/{name}/rotate", token, {"grace_seconds": 8})
    assert rotated.status_code == 200, rotated.text

    def state() -> dict[str, Any]:
        return registrar.services(token)[name]

    rolling = wait_for(lambda: (s := state())["state"] == "rolling" and s, 30, 0.5, "not rolling")
    assert "works until" in rolling["reason"], rolling
    assert rig.server.token(name, old_secret).status_code == 200  # in its grace
    stranded = wait_for(
        lambda: (s := state())["state"] == "stranded" and s, 60, 0.5, "never stranded"
    )
    assert "no longer works" in stranded["reason"], stranded
    assert rig.server.token(name, old_secret).json()["error"] == "invalid_client"
    assert registrar.metric("swarm_oauth_registrar_services", state="stranded") == 1

    # The operator replaces the task left behind: the service is whole again.
    resume = ["docker", "service", "update", "--detach", "--update-delay", "0s", "--force", name]
    subprocess.run(resume, check=True, capture_output=True, timeout=60)
    wait_for(lambda: state()["state"] == "registered", 120, 1.0, "still not registered")
    assert state()["reason"] == ""
