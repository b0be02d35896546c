"""A swarm of five nodes on this machine, for tests/multinode/.

Each node is a Docker Engine from Debian's packages (the node image, .ci/node-image.sh)
running in a container of the host's engine, all on one private bridge network: three
managers (m1-m3) and two workers (w1, w2), with overlay networks (VXLAN) between them.
What each setting is for:

- no ``--privileged``: it fails here (the host's bounding set lacks SYS_RESOURCE), so every
  other capability is added by name, with seccomp and AppArmor off;
- /sys/fs/cgroup bind-mounted read-write (the node's containers make their cgroups there)
  under a cgroup parent of the node's own, which keeps each node's containers apart in the
  host's cgroup tree; those directories are removed with the node;
- DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1, without which overlay sandboxes fail to start,
  and DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1, without which every task start first waits
  for a registry that cannot be reached;
- /var/lib/docker on a volume (overlayfs cannot stack on the container's own), so that a
  node killed and started again comes back with its swarm state, images and volumes, and
  /run on a tmpfs, so that it comes back without the pid files of the engine it was;
- a fixed address per node: managers find each other at the addresses they joined with;
- the engine's API socket in a host directory, so that the tests drive each node with the
  Docker SDK, and the CLI with DOCKER_HOST, from here; nothing listens on the network.

No registry: the project's image (with the base image it is built on) goes to every node
and the PostgreSQL image to the one node that runs the database (the stack pins it there),
by ``docker save`` here and a load there.

Everything the cluster makes on the host (the node containers, their volumes, the network)
carries ``swarm-oauth.multinode=<run id>`` and the identity of the pytest process that made
it. At start, whatever a process that is gone left behind is removed; at the end, failure
or not, this run's. Objects inside the cluster need no labels: they go with it. The stack
deployed on it is in tests/support/multinode_stack.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import requests
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from tests.support.deploy import (
    ROOT,
    build_image,
    docker_cli,
    run_script,
)
from tests.support.requirements import unavailable
from tests.support.swarm import wait_for

NODE_IMAGE = os.environ.get("NODE_IMAGE", "local/swarm-node:trixie")
NODE_IMAGE_SCRIPT = ROOT / ".ci" / "node-image.sh"
POSTGRES_IMAGE_SCRIPT = ROOT / ".ci" / "postgres-image.sh"
CLUSTER_LABEL = "swarm-oauth.multinode"
OWNER_LABEL = "swarm-oauth.multinode.owner"
# Host objects are named with this, then the run id: containers, volumes, the network,
# the nodes' cgroup parents and API directories.
PREFIX = "swarm-oauth-mn"
MANAGERS = ("m1", "m2", "m3")
WORKERS = ("w1", "w2")
# The node labels the stack files place services by: the servers on the managers, the
# database on a worker, so that no manager's failure takes the database with it.
STORE_LABEL = "swarm-oauth.store"
DATABASE_LABEL = "swarm-oauth.database"
DATABASE_NODE = "w2"
# Every capability except SYS_RESOURCE, which this host's bounding set lacks.
CAPABILITIES = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
]
# RFC 2544's benchmarking range: no real network and no Docker address pool uses it, so
# it clashes neither with the host's networks nor with the overlays inside the nodes.
SUBNETS = [f"198.18.{third}.0/24" for third in range(256)]
NODE_API_DIR = "/node-api"
# The project's image for a session: this, the run id and the owner (the tag is its label).
IMAGE_PREFIX = "swarm-oauth:multinode-"
# How a call to an engine that is gone or busy electing a leader fails.
ENGINE_ERRORS = (DockerException, requests.RequestException)


def _process_identity(pid: int) -> str | None:
    """``pid:start time``, which no later process with the same pid shares; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after do not.
    return f"{pid}:{stat.rpartition(')')[2].split()[19]}"


OWNER = _process_identity(os.getpid()) or str(os.getpid())


def _owner_alive(owner: str) -> bool:
    pid = owner.partition(":")[0]
    return pid.isdigit() and _process_identity(int(pid)) == owner


@dataclass
class Node:
    """One nested engine: its name in the swarm, its container and address on the host."""

    name: str
    role: str
    address: str
    container_name: str
    api_dir: Path
    node_id: str = ""
    up: bool = True
    _client: docker.DockerClient | None = field(default=None, repr=False)

    @property
    def docker_host(self) -> str:
        """The DOCKER_HOST of this node's engine."""
        return f"unix://{self.api_dir}/docker.sock"

    @property
    def client(self) -> docker.DockerClient:
        """A Docker SDK client of this node's engine."""
        if self._client is None:
            self._client = docker.DockerClient(base_url=self.docker_host, timeout=60)
        return self._client

    def answers(self) -> bool:
        """Whether the engine answers."""
        try:
            return bool(self.client.ping())
        except ENGINE_ERRORS:
            return False

    def close(self) -> None:
        """Close the SDK client (the next use makes a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None


@dataclass
class Cluster:
    """The running swarm: its nodes by name, the host objects behind them, its images."""

    host: docker.DockerClient
    run_id: str
    bridge: str
    nodes: dict[str, Node]
    image: str
    postgres_image: str

    def by_id(self, node_id: str) -> Node:
        """The node with this swarm node id."""
        return next(node for node in self.nodes.values() if node.node_id == node_id)

    def manager(self) -> Node:
        """A manager that is up and answers (the swarm forwards writes to its leader)."""

        def find() -> Node | None:
            return next(
                (self.nodes[n] for n in MANAGERS if self.nodes[n].up and self.nodes[n].answers()),
                None,
            )

        return wait_for(find, 60, 0.5, "no manager answers")

    @property
    def client(self) -> docker.DockerClient:
        """A Docker SDK client of a live manager."""
        return self.manager().client

    def cli_env(self) -> dict[str, str]:
        """The environment that points the docker CLI at a live manager."""
        return {"DOCKER_HOST": self.manager().docker_host}

    def retry(self, action: Callable[[], Any], timeout: float = 60) -> Any:
        """``action()``, retried while the swarm cannot answer (a leader election after a
        manager died, an engine starting)."""
        failure: list[str] = []

        def attempt() -> tuple[Any] | None:
            try:
                return (action(),)
            except ENGINE_ERRORS as exc:
                failure[:] = [str(exc)]
                return None

        return wait_for(attempt, timeout, 0.5, lambda: f"the swarm kept failing: {failure}")[0]

    def running_tasks(self, service: str) -> list[dict[str, Any]]:
        """The tasks of ``service`` running on nodes that are up, newest first."""
        tasks = self.retry(
            lambda: self.client.api.tasks(filters={"service": service, "desired-state": "running"})
        )
        up = {node.node_id for node in self.nodes.values() if node.up}
        running = [t for t in tasks if t["Status"]["State"] == "running" and t["NodeID"] in up]
        return sorted(running, key=lambda t: str(t["CreatedAt"]), reverse=True)

    def task_container(self, task: dict[str, Any]) -> tuple[Node, Container]:
        """The node a task runs on, and its container there."""
        node = self.by_id(task["NodeID"])
        return node, node.client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])

    def container(self, service: str, timeout: float = 90) -> tuple[Node, Container]:
        """The node and container of the newest running task of ``service``, waiting for one."""

        def find() -> tuple[Node, Container] | None:
            for task in self.running_tasks(service):
                with contextlib.suppress(*ENGINE_ERRORS):
                    return self.task_container(task)
            return None

        return wait_for(find, timeout, 0.5, f"no running task of {service}")

    def kill(self, name: str) -> float:
        """Kill node ``name``, engine and containers at once, as a power cut would; the
        time it died."""
        node = self.nodes[name]
        node.up = False
        node.close()
        self.host.containers.get(node.container_name).kill()
        return time.time()

    def start(self, name: str, timeout: float = 120) -> None:
        """Start node ``name`` again and wait until the swarm has it back, ready."""
        node = self.nodes[name]
        self.host.containers.get(node.container_name).start()
        wait_for(node.answers, timeout, 0.5, f"the engine of {name} never answered")
        node.up = True
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 120) -> None:
        """Wait until every node that is up is ready, and every manager among them reachable."""

        def ready() -> bool:
            with contextlib.suppress(*ENGINE_ERRORS):
                states = {n.attrs["ID"]: n.attrs for n in self.client.nodes.list()}
                return all(
                    states[node.node_id]["Status"]["State"] == "ready"
                    and (
                        node.role == "worker"
                        or states[node.node_id]["ManagerStatus"]["Reachability"] == "reachable"
                    )
                    for node in self.nodes.values()
                    if node.up
                )
            return False

        wait_for(ready, timeout, 0.5, "the swarm's nodes never were all ready")

    def update_node(self, name: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Apply ``change`` to node ``name``'s spec (its labels, its availability)."""

        def update() -> bool:
            node = self.client.nodes.get(self.nodes[name].node_id)
            spec = node.attrs["Spec"]
            change(spec)
            try:
                return bool(node.update(spec))
            except APIError as exc:  # "update out of sequence": someone else wrote it
                if "out of sequence" in str(exc):
                    return False
                raise

        wait_for(lambda: self.retry(update), 30, 0.2, f"node {name} could not be updated")

    def esp_available(self) -> bool:
        """Whether the kernel can do what encrypted overlays need: the ESP security
        association with AES-GCM that Docker installs, tried on a node."""
        state = ["src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp", "spi", "0x101"]
        key = ["aead", "rfc4106(gcm(aes))", "0x" + "ab" * 20, "64"]
        container = self.host.containers.get(self.nodes[WORKERS[0]].container_name)
        added = container.exec_run(
            ["ip", "xfrm", "state", "add", *state, "reqid", "1", "mode", "transport", *key]
        )
        if added.exit_code != 0:
            return False
        container.exec_run(["ip", "xfrm", "state", "delete", *state])
        return True


def _run_node(host: docker.DockerClient, run_id: str, node: Node, network: str) -> None:
    labels = {CLUSTER_LABEL: run_id, OWNER_LABEL: OWNER}
    host.volumes.create(name=node.container_name, labels=labels)
    # The CLI, not docker-py's run(): it gives a fixed address on a user network directly.
    docker_cli(
        "run",
        "--detach",
        "--init",
        *[arg for cap in CAPABILITIES for arg in ("--cap-add", cap)],
        "--security-opt=seccomp=unconfined",
        "--security-opt=apparmor=unconfined",
        f"--volume={node.container_name}:/var/lib/docker",
        "--tmpfs=/run",
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw",
        f"--volume={node.api_dir}:{NODE_API_DIR}",
        "--env=DOCKER_ALLOW_IPV6_ON_IPV4_INTERFACE=1",
        # Run a service's image as loaded instead of asking a registry first: the swarm
        # pulls before every task start otherwise, and with no registry that costs ~20 s.
        "--env=DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1",
        f"--name={node.container_name}",
        f"--hostname={node.name}",
        f"--network={network}",
        f"--ip={node.address}",
        *[f"--label={key}={value}" for key, value in labels.items()],
        NODE_IMAGE,
        "dockerd",
        "--iptables=false",
        "--ip6tables=false",
        f"--cgroup-parent=/{node.container_name}",
        "--host=unix:///var/run/docker.sock",
        f"--host=unix://{NODE_API_DIR}/docker.sock",
    )


def _create_network(host: docker.DockerClient, run_id: str, name: str, bridge: str) -> str:
    """Create the nodes' bridge network on a free subnet; return the subnet."""
    taken = {
        config.get("Subnet")
        for network in host.networks.list(greedy=True)
        for config in (network.attrs.get("IPAM") or {}).get("Config") or []
    }
    for subnet in [s for s in SUBNETS if s not in taken]:
        try:
            host.networks.create(
                name,
                driver="bridge",
                ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)]),
                options={"com.docker.network.bridge.name": bridge},
                labels={CLUSTER_LABEL: run_id, OWNER_LABEL: OWNER},
            )
            return subnet
        except APIError as exc:  # another session took it meanwhile
            if "overlap" not in str(exc).lower():
                raise
    raise AssertionError("no free 198.18.x.0/24 subnet for the nodes' network")


def _add_node_label(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda spec: spec.setdefault("Labels", {}).update({key: "true"})


def _form_swarm(cluster: Cluster) -> None:
    first, *others = (cluster.nodes[name] for name in (*MANAGERS, *WORKERS))
    first.client.swarm.init(advertise_addr=first.address, listen_addr=f"{first.address}:2377")
    tokens = first.client.api.inspect_swarm()["JoinTokens"]
    for node in others:
        node.client.swarm.join(
            remote_addrs=[f"{first.address}:2377"],
            join_token=tokens["Manager" if node.role == "manager" else "Worker"],
            advertise_addr=node.address,
            listen_addr=f"{node.address}:2377",
        )
    for node in cluster.nodes.values():
        node.node_id = node.client.info()["Swarm"]["NodeID"]
    cluster.wait_ready()
    for name in MANAGERS:
        cluster.update_node(name, _add_node_label(STORE_LABEL))
    cluster.update_node(DATABASE_NODE, _add_node_label(DATABASE_LABEL))


def _load_images(cluster: Cluster, tmp: Path, everywhere: list[str]) -> None:
    """Copy ``everywhere`` into every node, and the PostgreSQL image into the database node."""
    jobs: list[tuple[Node, Path]] = []
    for images, nodes in (
        (everywhere, list(cluster.nodes.values())),
        ([cluster.postgres_image], [cluster.nodes[DATABASE_NODE]]),
    ):
        archive = tmp / f"images-{len(jobs)}.tar"
        docker_cli("save", f"--output={archive}", *images, timeout=300)
        jobs += [(node, archive) for node in nodes]

    def load(job: tuple[Node, Path]) -> None:
        node, archive = job
        with archive.open("rb") as stream:
            node.client.images.load(stream)

    with ThreadPoolExecutor(len(jobs)) as pool:
        list(pool.map(load, jobs))
    for archive in {archive for _, archive in jobs}:
        archive.unlink()


def _cgroup_tops(prefix: str) -> list[Path]:
    """The cgroup parents (v1 controllers, or v2) whose name starts with ``prefix``."""
    root = Path("/sys/fs/cgroup")
    return [
        path for path in [*root.glob(f"{prefix}*"), *root.glob(f"*/{prefix}*")] if path.is_dir()
    ]


def _api_dirs(prefix: str) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"{prefix}*"))


def remove_cluster(host: docker.DockerClient, run_id: str) -> list[str]:
    """Remove every host object of run ``run_id``; describe whatever could not be removed."""
    problems: list[str] = []
    filters = {"label": f"{CLUSTER_LABEL}={run_id}"}
    try:
        for container in host.containers.list(all=True, filters=filters):
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        for objects in (host.volumes.list(filters=filters), host.networks.list(filters=filters)):
            for obj in objects:
                try:
                    obj.remove()
                except NotFound:
                    pass
                except APIError as exc:
                    problems.append(f"{obj.name}: {exc}")
    except DockerException as exc:
        problems.append(f"removing the cluster of run {run_id}: {exc}")
    # The nodes are gone, so their cgroups hold no process: remove them deepest first.
    for top in _cgroup_tops(f"{PREFIX}-{run_id}-"):
        for path, _, _ in sorted(os.walk(top), key=lambda entry: -len(Path(entry[0]).parts)):
            try:
                Path(path).rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                problems.append(f"cgroup {path}: {exc}")
    for api_dir in _api_dirs(f"{PREFIX}-{run_id}-"):
        shutil.rmtree(api_dir, ignore_errors=True)
    return problems


def _labels(obj: Any) -> dict[str, str]:
    attrs = obj.attrs
    return dict(attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {})


def remove_orphans(host: docker.DockerClient) -> None:
    """Remove the clusters and images of pytest processes that are gone (killed before
    their cleanup); those of live ones, other sessions' too, stay."""
    owners: dict[str, set[str]] = {}
    filters = {"label": OWNER_LABEL}
    for objects in (
        host.containers.list(all=True, filters=filters),
        host.volumes.list(filters=filters),
        host.networks.list(filters=filters),
    ):
        for obj in objects:
            labels = _labels(obj)
            owners.setdefault(labels[CLUSTER_LABEL], set()).add(labels[OWNER_LABEL])
    live = {run for run, found in owners.items() if any(map(_owner_alive, found))}
    # A run whose host objects are gone may still have left cgroups or API directories.
    leftovers = {
        path.name.removeprefix(f"{PREFIX}-").split("-")[0]
        for path in [*_cgroup_tops(f"{PREFIX}-"), *_api_dirs(f"{PREFIX}-")]
    }
    for run in (set(owners) | leftovers) - live:
        remove_cluster(host, run)
    for image in host.images.list(name=IMAGE_PREFIX.partition(":")[0]):
        for tag in image.tags:
            owner = ":".join(tag.removeprefix(IMAGE_PREFIX).split("-")[1:])
            if tag.startswith(IMAGE_PREFIX) and not _owner_alive(owner):
                with contextlib.suppress(ImageNotFound, APIError):
                    host.images.remove(tag)


@contextlib.contextmanager
def open_cluster(
    host: docker.DockerClient, run_id: str, image: str, base_image: str, postgres_image: str
) -> Iterator[Cluster]:
    """Boot the swarm and load the images into it; remove it all on the way out."""
    remove_orphans(host)
    name = f"{PREFIX}-{run_id}"
    nodes: dict[str, Node] = {}
    try:
        bridge = f"so-mn-{run_id}"  # at most 15 characters, the kernel's limit
        subnet = _create_network(host, run_id, name, bridge)
        # After the network, which marks this run as live for other sessions' clean-up.
        api_root = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        prefix = subnet.rpartition(".")[0]
        roles = [(n, "manager") for n in MANAGERS] + [(n, "worker") for n in WORKERS]
        for i, (node_name, role) in enumerate(roles):
            node = Node(
                node_name, role, f"{prefix}.{10 + i}", f"{name}-{node_name}", api_root / node_name
            )
            nodes[node_name] = node
            node.api_dir.mkdir()
            _run_node(host, run_id, node, name)
        for node in nodes.values():
            wait_for(node.answers, 60, 0.3, f"the engine of {node.name} never answered")
        cluster = Cluster(host, run_id, bridge, nodes, image, postgres_image)
        _form_swarm(cluster)
        _load_images(cluster, api_root, [image, base_image])
        yield cluster
    finally:
        for node in nodes.values():
            node.close()
        problems = remove_cluster(host, run_id)
        if problems:
            raise AssertionError("the cluster left objects behind:\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def node_image(docker_client: docker.DockerClient) -> str:
    """The swarm node image, built with .ci/node-image.sh if missing."""
    try:
        docker_client.images.get(NODE_IMAGE)
    except ImageNotFound:
        if shutil.which("mmdebstrap") is None:
            unavailable(f"image {NODE_IMAGE} is missing and mmdebstrap is not installed")
        run_script(NODE_IMAGE_SCRIPT, {"NODE_IMAGE": NODE_IMAGE})
    return NODE_IMAGE


@pytest.fixture(scope="session")
def postgres_image(base_image: str) -> str:
    """The PostgreSQL image of deploy/postgres on the base image (.ci/postgres-image.sh
    builds it once per machine and names it)."""
    return run_script(POSTGRES_IMAGE_SCRIPT, {"BASE_IMAGE": base_image}).split()[-1]


@pytest.fixture(scope="module")
def cluster(
    docker_client: docker.DockerClient,
    base_image: str,
    node_image: str,
    postgres_image: str,
    run_id: str,
    timings: dict[str, float],
) -> Iterator[Cluster]:
    """The five-node swarm, with the project's image (built for this session with
    deploy/build-image.sh) on every node and the PostgreSQL image on the database node.

    Module-scoped: the nodes go as soon as the tier's tests end, not with the session, and
    the tier's whole cost (this fixture's life) is printed with the other timings.
    """
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")
    tag = f"{IMAGE_PREFIX}{run_id}-{OWNER.replace(':', '-')}"
    tier_started = started = time.time()
    build_image(base_image, tag)
    timings["setup: the project's image built (s)"] = time.time() - started
    try:
        started = time.time()
        with open_cluster(docker_client, run_id, tag, base_image, postgres_image) as opened:
            timings["setup: five nodes in a swarm, images loaded (s)"] = time.time() - started
            yield opened
    finally:
        with contextlib.suppress(ImageNotFound):
            docker_client.images.remove(tag)
        timings["the tier: image built to cluster removed, wall time (s)"] = (
            time.time() - tier_started
        )


TIMINGS = pytest.StashKey[dict[str, float]]()


@pytest.fixture(scope="session")
def timings(request: pytest.FixtureRequest) -> dict[str, float]:
    """Figures the tests measure (their names say the unit), printed after the tests."""
    return request.config.stash.setdefault(TIMINGS, {})


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Print the figures of ``timings`` (outside any test's captured output)."""
    found = config.stash.get(TIMINGS, {})
    if found:
        terminalreporter.write_sep("-", "multi-node timings")
        width = max(map(len, found))
        for name, value in found.items():
            terminalreporter.write_line(f"{name:<{width}}  {value:8.2f}")
