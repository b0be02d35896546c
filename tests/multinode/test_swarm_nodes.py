"""The stack on a swarm of several nodes: identities cross nodes, node failures are survived.

One five-node cluster per session (tests/support/multinode.py) and one deployment of
deploy/stack.yml with deploy/stack.postgres.yml on it, its overlays unencrypted: two
oauth-tokens replicas and oauth-clients on the managers (labelled swarm-oauth.store),
the registrar on a manager, PostgreSQL on worker w2 (labelled swarm-oauth.database), and
the services under test on the workers. The traffic between nodes is captured on their
bridge with tcpdump, for this deployment and for a second one whose overlays are
encrypted. The tests run in file order; one that kills a node starts it again before it
ends, so the next finds all five.

What they measure (registration across nodes, each kind of failover) is printed at the
end of the session and kept in bench/RESULTS.md; the one bound asserted is the one the
design promises: callers have a token again within 5 s of losing a token replica's node.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.models.containers import Container

from swarm_oauth.sdk.token_source import basic_credentials
from tests.support.deploy import exec_json, registrar_secrets
from tests.support.multinode import DATABASE_NODE, ENGINE_ERRORS, Cluster, Node
from tests.support.multinode_stack import ISSUER, Deployment, open_deployment
from tests.support.requirements import unavailable
from tests.support.swarm import exec_in, wait_for

pytestmark = [pytest.mark.docker, pytest.mark.multinode, pytest.mark.timeout(600)]

# In a managed service's task: what the registrar gave it, and a token got with it.
OWN_TOKEN = """
import json, os, pathlib
from swarm_oauth.sdk import TokenSource
print(json.dumps({
    "client_id": os.environ["OAUTH_CLIENT_ID"],
    "token_url": os.environ["OAUTH_TOKEN_URL"],
    "secret": pathlib.Path(os.environ["OAUTH_CLIENT_SECRET_FILE"]).read_text(),
    "token": TokenSource.from_env().token(),
}))
"""

# Anywhere on the public network: a token from given credentials (a client the test made).
# Anywhere on the public network: a token from given credentials (a client the test
# made), or why there is none.
TOKEN_WITH = """
import json, sys
from swarm_oauth.sdk import SwarmOAuthError, TokenSource
url = "http://oauth-tokens:8080/api/token"
source = TokenSource(sys.argv[1], url, client_secret=sys.argv[2], timeout=5)
try:
    print(json.dumps([source.token(), None]))
except SwarmOAuthError as exc:
    print(json.dumps([None, f"{type(exc).__name__}: {exc}"]))
"""

VERIFY = f"""
import json, sys
from swarm_oauth.sdk import Verifier
print(json.dumps(Verifier({ISSUER!r}, audience={ISSUER!r}).verify(sys.argv[1])))
"""

# In the oauth-clients container, which holds the admin token: a new client, and its secret.
ADD_CLIENT = """
import json, pathlib, sys, httpx
token = pathlib.Path("/run/secrets/swarm-oauth-admin-token").read_text().strip()
r = httpx.post("http://127.0.0.1:8080/api/clients/add", json={"client_id": sys.argv[1]},
               headers={"Authorization": "Bearer " + token}, timeout=5)
r.raise_for_status()
print(json.dumps(r.json()["client_secret"]))
"""

# In an oauth-tokens container: what this replica answers to a token request.
ASK_REPLICA = """
import json, sys, httpx
from swarm_oauth.sdk.token_source import basic_credentials
try:
    r = httpx.post("http://127.0.0.1:8080/api/token", data={"grant_type": "client_credentials"},
                   headers={"Authorization": basic_credentials(sys.argv[1], sys.argv[2])},
                   timeout=5)
    answer = [r.status_code, None if r.status_code == 200 else r.json().get("error")]
except httpx.HTTPError as exc:
    answer = [type(exc).__name__, None]
print(json.dumps(answer))
"""

# A caller on a worker, as a service would run it: a fresh token (a request to
# http://oauth-tokens:8080, which resolves to every replica) every 0.2 s through the SDK,
# async or sync (either tries a second address 0.25 s after the first, RFC 8305), each
# attempt logged until the stop file appears. The timeout is below the 5 s a caller may
# wait: a request in flight to a replica whose node dies gets no answer at all.
FAILOVER_CALLER = """
import asyncio, json, os, sys, time
from swarm_oauth.sdk import SwarmOAuthError, TokenSource

log_path, stop_path, mode = sys.argv[1:]
source = TokenSource.from_env(timeout=2.0, min_token_age=0)
with open(log_path, "a") as log:
    while not os.path.exists(stop_path):
        start = time.time()
        try:
            token = asyncio.run(source.atoken()) if mode == "async" else source.token()
            source.invalidate(token)
            error = None
        except SwarmOAuthError as exc:
            error = f"{type(exc).__name__}: {exc}"
        log.write(json.dumps({"start": start, "end": time.time(), "error": error}) + "\\n")
        log.flush()
        time.sleep(0.2)
"""
CALLER_MODES = ("async", "sync")
CALLER_STOP = "/tmp/failover.stop"
# A token request takes some 10-50 ms here; one that waited on a dead address takes longer.
SLOWED = 0.2


@pytest.fixture(scope="module")
def deployment(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, timings: dict[str, float]
) -> Iterator[Deployment]:
    """The stack on the cluster, its overlays unencrypted, every part ready."""
    tmp = tmp_path_factory.mktemp("multinode")
    started = time.time()
    with open_deployment(cluster, tmp, "oauth", encrypted=False) as deployed:
        timings["setup: stack deployed, every part ready (s)"] = time.time() - started
        yield deployed


def app_container(
    deployment: Deployment, name: str, away_from: str | None = None
) -> tuple[Node, Container]:
    """The running task of managed service ``name`` that has its identity, on any node
    but ``away_from``."""
    cluster = deployment.cluster

    def find() -> tuple[Node, Container] | None:
        for task in cluster.running_tasks(name):
            env = task["Spec"]["ContainerSpec"].get("Env") or []
            moved = away_from is None or cluster.by_id(task["NodeID"]).name != away_from
            if moved and any(item.startswith("OAUTH_CLIENT_ID=") for item in env):
                with contextlib.suppress(*ENGINE_ERRORS):
                    return cluster.task_container(task)
        return None

    return wait_for(find, 120, 0.5, f"no task of {name} with its identity")


@pytest.fixture(scope="module")
def app(deployment: Deployment, timings: dict[str, float]) -> str:
    """A managed service on a worker, registered, its task holding its secret; its name."""
    created = time.time()
    deployment.create_app("app")
    deployment.identity("app")
    timings["registration across nodes: service created to secret mounted (s)"] = (
        time.time() - created
    )
    exec_json(app_container(deployment, "app")[1], OWN_TOKEN)
    timings["registration across nodes: service created to first token on a worker (s)"] = (
        time.time() - created
    )
    return "app"


@pytest.fixture(scope="module")
def verifier(deployment: Deployment, app: str) -> str:
    """An unmanaged service on another node than the app's task; its name."""
    node, _ = app_container(deployment, app)
    deployment.create_app("verifier", [f"node.id != {node.node_id}"], managed=False)
    return "verifier"


def two_replicas(deployment: Deployment) -> set[str] | None:
    """The two nodes running oauth-tokens replicas, or None while there are fewer."""
    found = token_nodes(deployment)
    return found if len(found) == 2 else None


def token_nodes(deployment: Deployment) -> set[str]:
    """The nodes running oauth-tokens replicas."""
    cluster = deployment.cluster
    tasks = cluster.running_tasks(deployment.service("oauth-tokens"))
    return {cluster.by_id(task["NodeID"]).name for task in tasks}


@contextlib.contextmanager
def capture(bridge: str, path: Path) -> Iterator[None]:
    """tcpdump on the nodes' bridge, into ``path``, while the block runs: the overlays'
    VXLAN packets and any ESP (what encrypted overlays send instead). Immediate mode:
    otherwise packets wait in the kernel's buffer and are lost when tcpdump stops."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        unavailable("tcpdump is not installed (.ci/packages.sh installs it)")
    process = subprocess.Popen(
        [
            tcpdump,
            "-i",
            bridge,
            "--immediate-mode",
            "-U",
            "-s",
            "0",
            "-w",
            str(path),
            "udp port 4789 or ip proto 50",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        started = process.stderr.readline()  # "listening on ..." once it captures
        assert "listening on" in started, f"tcpdump did not start: {started}"
        yield
        time.sleep(0.5)  # the last packets of the exchange
    finally:
        process.terminate()
        process.wait(10)


def packets(path: Path, expression: str) -> int:
    """How many packets of the capture match ``expression``."""
    counted = subprocess.run(
        ["tcpdump", "--count", "-r", str(path), expression],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(counted.stdout.split()[0])  # "N packets"


def vxlan_of(vni: str) -> str:
    """The tcpdump expression of VXLAN packets of one overlay (its VNI, in the 3 bytes
    after the 4 of flags in the VXLAN header)."""
    return f"udp port 4789 and (udp[12:4] & 0xffffff00) = {int(vni) << 8}"


def on_the_wire(path: Path, client_id: str, secret: str, token: str) -> dict[str, Any]:
    """What of a token exchange the capture shows: the client secret (as it is, or in the
    Basic credentials it travels in), the token, and how many packets of each kind."""
    raw, secret = path.read_bytes(), secret.strip()
    basic = basic_credentials(client_id, secret).encode()
    return {
        "secret": secret.encode() in raw or basic in raw,
        "token": token.encode() in raw,
        "vxlan": packets(path, "udp port 4789"),
        "esp": packets(path, "ip proto 50"),
    }


def test_a_task_on_a_worker_gets_its_secret_and_a_token_that_another_node_verifies(
    deployment: Deployment, app: str, verifier: str
) -> None:
    cluster = deployment.cluster
    node, container = app_container(deployment, app)
    own = exec_json(container, OWN_TOKEN)
    verifier_node, verifier_container = cluster.container(verifier)
    claims = exec_json(verifier_container, VERIFY, own["token"])

    assert node.role == "worker"
    assert verifier_node.name != node.name
    replicas = token_nodes(deployment)
    assert len(replicas) == 2
    assert node.name not in replicas
    assert (own["client_id"], own["token_url"]) == (app, f"{ISSUER}/api/token")
    assert own["secret"].strip()
    assert (claims["client_id"], claims["sub"], claims["iss"]) == (app, app, ISSUER)
    # The verifier refuses what was not signed by the swarm's token server.
    code, _ = exec_in(verifier_container, ["python", "-c", VERIFY, own["token"][:-4] + "AAAA"])
    assert code != 0


def test_the_database_runs_on_its_labelled_node_under_a_role_that_is_no_superuser(
    deployment: Deployment,
) -> None:
    node, container = deployment.container("postgres")
    code, roles = exec_in(
        container,
        ["psql", "--no-psqlrc", "-AtU", "postgres", "-c", "SELECT rolname, rolsuper FROM pg_roles"],
    )

    assert node.name == DATABASE_NODE
    assert code == 0, roles
    assert "swarm_oauth|f" in roles.splitlines()
    mounts = {m["Destination"]: m["Type"] for m in container.attrs["Mounts"]}
    assert mounts["/var/lib/postgresql/data"] == "volume"


def test_without_encryption_the_secret_and_the_token_cross_the_bridge_in_clear(
    deployment: Deployment, app: str, tmp_path: Path
) -> None:
    _, container = app_container(deployment, app)
    pcap = tmp_path / "plain.pcap"

    with capture(deployment.cluster.bridge, pcap):
        own = exec_json(container, OWN_TOKEN)

    seen = on_the_wire(pcap, own["client_id"], own["secret"], own["token"])
    network = deployment.cluster.client.networks.get(deployment.public_network)
    assert "encrypted" not in network.attrs["Options"]
    assert seen["vxlan"] > 0
    assert seen["esp"] == 0
    # The check below can fail: here is what it looks for, in clear.
    assert seen["secret"]
    assert seen["token"]


def test_with_encryption_neither_the_secret_nor_the_token_crosses_the_bridge_in_clear(
    cluster: Cluster, deployment: Deployment, tmp_path: Path, timings: dict[str, float]
) -> None:
    # Docker encrypts overlays with IPsec ESP (AES-GCM). Where the kernel has it, the token
    # exchange crosses as ESP; where it has not (CONFIG_INET_ESP unset, as on the machines
    # this was written on), Docker's policy drops the exchange instead: encryption fails
    # closed. Either way nothing of it may cross in clear, and the run says which it saw.
    esp = cluster.esp_available()
    timings["encrypted overlays: the kernel has ESP with AES-GCM (1 yes, 0 no)"] = float(esp)
    # A second deployment beside the first, its overlays encrypted, its servers and
    # database on one node (so that only the token exchange crosses to another) and no
    # registrar: the client comes from its clients API.
    database = cluster.nodes[DATABASE_NODE]
    with open_deployment(cluster, tmp_path, "sealed", True, servers_on=database) as sealed:
        options = cluster.client.networks.get(sealed.public_network).attrs["Options"]
        secret = exec_json(sealed.container("oauth-clients")[1], ADD_CLIENT, "sealed-caller")
        sealed.create_app("sealed-caller", [f"node.id != {database.node_id}"], managed=False)
        node, container = cluster.container("sealed-caller")
        pcap = tmp_path / "sealed.pcap"

        with capture(cluster.bridge, pcap):
            token, error = exec_json(container, TOKEN_WITH, "sealed-caller", secret)

        seen = on_the_wire(pcap, "sealed-caller", secret, token or "")
        clear = packets(pcap, vxlan_of(options["com.docker.network.driver.overlay.vxlanid_list"]))
        cluster.retry(lambda: cluster.client.services.get("sealed-caller").remove())

    assert "encrypted" in options
    assert node.name != database.name
    # Nothing of the encrypted network travels as plain VXLAN, whatever the kernel.
    assert clear == 0
    assert not seen["secret"]
    if esp:
        assert token, error
        assert seen["esp"] > 0
        assert not seen["token"]
    else:
        assert token is None
        assert "unreachable" in error
        assert seen["esp"] == 0


def test_draining_the_worker_moves_the_task_and_its_identity_to_the_other_worker(
    deployment: Deployment, app: str, verifier: str, timings: dict[str, float]
) -> None:
    cluster = deployment.cluster
    node, container = app_container(deployment, app)
    before = exec_json(container, OWN_TOKEN)
    identity = deployment.identity(app)

    drained = time.time()
    cluster.update_node(node.name, lambda spec: spec.update(Availability="drain"))
    try:
        moved, moved_container = app_container(deployment, app, away_from=node.name)
        timings["drain: task running with its secret on the other worker (s)"] = (
            time.time() - drained
        )
        after = exec_json(moved_container, OWN_TOKEN)
        claims = exec_json(cluster.container(verifier)[1], VERIFY, after["token"])
    finally:
        cluster.update_node(node.name, lambda spec: spec.update(Availability="active"))

    assert moved.role == "worker"
    assert moved.name != node.name
    # The same secret and the same client: nothing was registered or made again.
    assert after["secret"] == before["secret"]
    assert deployment.identity(app) == identity
    assert claims["client_id"] == app


def caller_log(mode: str) -> str:
    """Where the failover caller of ``mode`` logs its attempts (stderr: ``.err``)."""
    return f"/tmp/failover-{mode}.jsonl"


def start_callers(container: Container) -> None:
    """Start a failover caller of each mode in ``container``; wait until each has tokens."""
    for mode in CALLER_MODES:
        run = (
            f'exec python -c "$0" {caller_log(mode)} {CALLER_STOP} {mode} 2>{caller_log(mode)}.err'
        )
        container.exec_run(["sh", "-c", run, FAILOVER_CALLER], detach=True)
    for mode in CALLER_MODES:
        wait_for(
            lambda m=mode: sum(a["error"] is None for a in caller_attempts(container, m)) >= 5,
            30,
            0.5,
            lambda m=mode: (
                "a caller never got tokens: "
                + exec_in(container, ["cat", f"{caller_log(m)}.err"])[1]
            ),
        )


def caller_attempts(container: Container, mode: str) -> list[dict[str, Any]]:
    """The log of the failover caller of ``mode`` so far: one attempt per line."""
    path = caller_log(mode)
    _, output = exec_in(container, ["sh", "-c", f"cat {path} 2>/dev/null || true"])
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def is_leader(cluster: Cluster, name: str) -> bool:
    """Whether manager ``name`` leads the swarm's raft (losing it costs an election)."""
    node = cluster.client.nodes.get(cluster.nodes[name].node_id)
    return bool(node.attrs["ManagerStatus"].get("Leader", False))


def node_down(cluster: Cluster, name: str) -> bool:
    """Whether the swarm's managers have marked node ``name`` down."""
    node = cluster.retry(lambda: cluster.client.nodes.get(cluster.nodes[name].node_id))
    return bool(node.attrs["Status"]["State"] == "down")


def longest_wait(attempts: list[dict[str, Any]], since: float) -> float:
    """The longest a caller went without a token after ``since``: from ``since`` or one
    token to the next."""
    ends = sorted(a["end"] for a in attempts if a["error"] is None and a["end"] >= since)
    assert ends, "no token at all after the kill"
    marks = [since, *ends]
    return max(later - earlier for earlier, later in itertools.pairwise(marks))


def test_callers_get_tokens_within_5_s_when_a_token_replica_node_dies(
    deployment: Deployment, app: str, timings: dict[str, float]
) -> None:
    cluster = deployment.cluster
    tokens = deployment.service("oauth-tokens")
    before = token_nodes(deployment)
    # A replica's node that runs neither the registrar nor oauth-clients, if there is one:
    # the failover measured is the token endpoint's alone. Not the raft leader either if
    # it can be helped (one of the two never is): losing the leader adds an election and
    # some 30 s before the swarm marks the node down, which the registrar's test measures.
    others = {deployment.container(name)[0].name for name in ("registrar", "oauth-clients")}
    victim = min(before, key=lambda name: (is_leader(cluster, name), name in others, name))
    _, caller = app_container(deployment, app)
    start_callers(caller)
    timings["token replica's node killed: it was the raft leader (1 yes, 0 no)"] = float(
        is_leader(cluster, victim)
    )

    killed = cluster.kill(victim)
    try:
        wait_for(lambda: node_down(cluster, victim), 120, 0.5, f"{victim} never marked down")
        timings["token replica's node killed: node marked down (s)"] = time.time() - killed
        rescheduled = wait_for(
            lambda: two_replicas(deployment), 120, 0.5, f"{tokens} never ran two replicas again"
        )
        timings["token replica's node killed: replica running on another node (s)"] = (
            time.time() - killed
        )
        time.sleep(3)  # the callers keep going a little with the new replica
        exec_in(caller, ["touch", CALLER_STOP])
        attempts = {mode: caller_attempts(caller, mode) for mode in CALLER_MODES}
    finally:
        cluster.start(victim)

    assert victim not in rescheduled
    for mode, logged in attempts.items():
        after = [a for a in logged if a["end"] >= killed]
        failed = [a for a in after if a["error"]]
        slowed = [a for a in after if a["end"] - a["start"] > SLOWED]
        waited = longest_wait(logged, killed)
        prefix = f"token replica's node killed: {mode} caller"
        timings[f"{prefix}, longest without a token (s)"] = waited
        timings[f"{prefix}, requests slowed by the dead replica (count)"] = len(slowed)
        timings[f"{prefix}, requests failed (count)"] = len(failed)
        assert waited <= 5.0, f"the {mode} caller went {waited:.1f} s without a token: {failed}"
        # Failures are the dead replica's silence, never a refusal of good credentials.
        assert all("unreachable" in a["error"] for a in failed), failed


def test_the_registrar_moves_to_another_manager_and_catches_up_with_what_changed(
    deployment: Deployment, timings: dict[str, float]
) -> None:
    cluster = deployment.cluster
    leaving_id = deployment.create_app("leaving")
    leaving = deployment.identity("leaving")
    home, _ = deployment.container("registrar")
    timings["registrar's node killed: it was the raft leader (1 yes, 0 no)"] = float(
        is_leader(cluster, home.name)
    )

    killed = cluster.kill(home.name)
    try:
        cluster.retry(lambda: cluster.client.services.get(leaving_id).remove())
        deployment.create_app("arriving")
        wait_for(lambda: node_down(cluster, home.name), 120, 0.5, f"{home.name} never marked down")
        timings["registrar's node killed: node marked down (s)"] = time.time() - killed
        moved, _ = deployment.container("registrar", timeout=180)
        timings["registrar's node killed: registrar running on another manager (s)"] = (
            time.time() - killed
        )
        deployment.identity("arriving", timeout=180)
        timings["registrar's node killed: service created meanwhile registered (s)"] = (
            time.time() - killed
        )
        wait_for(
            lambda: cluster.retry(
                lambda: (
                    "leaving" not in deployment.clients()
                    and not registrar_secrets(cluster.client, [leaving_id])
                )
            ),
            180,
            1.0,
            "the removed service's client or secret outlived it",
        )
        timings["registrar's node killed: removed service's client and secret gone (s)"] = (
            time.time() - killed
        )
        own = exec_json(app_container(deployment, "arriving")[1], OWN_TOKEN)
        left = {s.id for s in cluster.client.secrets.list()} & set(leaving["secrets"])
    finally:
        cluster.start(home.name)

    assert moved.role == "manager"
    assert moved.name != home.name
    assert own["client_id"] == "arriving"
    assert own["token"]
    assert not left


def test_token_servers_answer_503_without_the_database_and_recover_without_a_restart(
    deployment: Deployment, app: str, timings: dict[str, float]
) -> None:
    cluster = deployment.cluster
    tokens = deployment.service("oauth-tokens")
    own = exec_json(app_container(deployment, app)[1], OWN_TOKEN)
    replicas = [cluster.task_container(task) for task in cluster.running_tasks(tokens)]
    tasks_before = {task["ID"] for task in cluster.running_tasks(tokens)}
    answers: list[list[Any]] = []

    def ask_all(status: int) -> bool:
        got = [exec_json(c, ASK_REPLICA, own["client_id"], own["secret"]) for _, c in replicas]
        answers.extend(got)
        return all(answer[0] == status for answer in got)

    assert ask_all(200)
    assert DATABASE_NODE not in {node.name for node, _ in replicas}
    killed = cluster.kill(DATABASE_NODE)
    try:
        wait_for(lambda: ask_all(503), 120, 0.5, lambda: f"no 503 from both: {answers[-2:]}")
        timings["database's node killed: both token replicas answer 503 (s)"] = time.time() - killed
        restarted = time.time()
        cluster.start(DATABASE_NODE)
        timings["database's node started: node back in the swarm (s)"] = time.time() - restarted
        wait_for(lambda: ask_all(200), 180, 0.5, lambda: f"no recovery: {answers[-2:]}")
        timings["database's node started: both token replicas serve again (s)"] = (
            time.time() - restarted
        )
    finally:
        if not cluster.nodes[DATABASE_NODE].up:
            cluster.start(DATABASE_NODE)

    # Only tokens or "come back later": never a refusal of good credentials, never a 500.
    assert {tuple(answer) for answer in answers} <= {(200, None), (503, "temporarily_unavailable")}
    assert {task["ID"] for task in cluster.running_tasks(tokens)} == tasks_before
