"""The user's path, whole: build the image, `docker stack deploy`, run two services on it.

The image is built once per session from the local base image (deploy/build-image.sh).
One deployment of deploy/stack.yml and one of deploy/demo/stack.yml serve the module; the
tests run in file order and the last one removes both stacks, as a user would. Every
object carries this session's test label (an override file adds it), and the fixtures
remove both stacks and everything labelled even when a test fails.

The registrar deployed here selects only this deployment's demo caller (its selector
value is the stack's unique name), so it never touches other sessions' services, and
no other registrar on the engine selects the caller.

The last test deploys both again on its own, with deploy/stack.swarm-listener.yml and the
swarm-listener image built from source, and swarm-listener as the registrar's only trigger.
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.errors import DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

from tests.support.deploy import (
    DEMO_STACK_FILE,
    LISTENER_STACK_FILE,
    STACK_FILE,
    STORE_NODE_LABEL,
    addresses_of,
    build_image,
    deploy_stack,
    docker_cli,
    ensure_node_label,
    exec_json,
    label_override,
    networks_of,
    registrar_secrets,
    remove_node_label,
    remove_stack,
    stack_objects,
)
from tests.support.swarm import (
    labelled_ids,
    remove_test_objects,
    running_container,
    unique_name,
    wait_for,
    with_test_label,
)

pytestmark = pytest.mark.docker

ISSUER = "http://oauth-tokens:8080"
ADMIN_TOKEN_PATH = "/run/secrets/swarm-oauth-admin-token"

# Run inside the registrar's container, the one place besides oauth-clients that is on
# the management network and holds the admin token.
LIST_CLIENTS = f"""
import json, pathlib, httpx
token = pathlib.Path({ADMIN_TOKEN_PATH!r}).read_text().strip()
r = httpx.get("http://oauth-clients:8080/api/clients",
              headers={{"Authorization": "Bearer " + token}}, timeout=5)
r.raise_for_status()
print(json.dumps(r.json()["clients"]))
"""

# Whether the registrar's first full pass (at its start) has finished.
START_PASS_DONE = """
import json, httpx
text = httpx.get("http://127.0.0.1:8081/metrics", timeout=5).text
name = "swarm_oauth_registrar_last_full_pass_timestamp_seconds"
print(json.dumps(any(line.split()[0] == name and float(line.split()[1]) > 0
                     for line in text.splitlines() if line.startswith(name))))
"""

REGISTRAR_READY = """
import json, httpx
try:
    status = httpx.get("http://127.0.0.1:8081/readyz", timeout=5).status_code
except httpx.HTTPError as exc:
    status = type(exc).__name__
print(json.dumps(status))
"""

CALLER_LAST_OUTCOME = """
import json, urllib.request
with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5) as r:
    print(json.dumps(json.load(r)))
"""

CALL_CALLEE_WITHOUT_TOKEN = """
import json, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://callee:8080/", timeout=5)
    print(json.dumps({"status": 200}))
except urllib.error.HTTPError as exc:
    print(json.dumps({"status": exc.code, "www_authenticate": exc.headers["WWW-Authenticate"],
                      "body": json.loads(exc.read() or b"null")}))
"""

# Names, direct connections to addresses, and the token side, all at once: a name the
# swarm does not know takes the resolver about 10 s to give up on. Timeouts are how a
# dropped connection shows; the outcome, not the time, is asserted.
PROBE_NETWORKS = """
import json, socket, sys, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor

def resolve(name):
    try:
        return sorted({a[4][0] for a in socket.getaddrinfo(name, 8080)})
    except socket.gaierror:
        return "unresolved"

def connect(address):
    with socket.socket() as s:
        s.settimeout(3)
        try:
            s.connect((address, 8080))
            return "connected"
        except OSError as exc:
            return type(exc).__name__

def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return [r.status, json.load(r)]
    except urllib.error.HTTPError as exc:
        return [exc.code, None]
    except OSError as exc:
        return [type(exc).__name__, None]

ask = json.loads(sys.argv[1])
with ThreadPoolExecutor(8) as pool:
    jobs = {
        kind: {key: pool.submit(probe, key) for key in ask.get(kind, ())}
        for kind, probe in (("resolve", resolve), ("connect", connect), ("get", get))
    }
    out = {kind: {key: job.result() for key, job in found.items()} for kind, found in jobs.items()}
print(json.dumps(out))
"""


def probe(container: Container, **ask: list[str]) -> dict[str, dict[str, Any]]:
    """From inside ``container``: ``resolve`` names, ``connect`` to addresses on port
    8080, ``get`` URLs (status and JSON body); all at once."""
    result = exec_json(container, PROBE_NETWORKS, json.dumps(ask))
    assert isinstance(result, dict)
    return result


@dataclass
class Deployment:
    """A deployed deploy/stack.yml and what the tests need to know about it."""

    client: docker.DockerClient
    stack: str
    env: dict[str, str]
    files: list[Path]
    secret_ids: list[str] = field(default_factory=list)

    @property
    def selector_value(self) -> str:
        """The value of swarm-oauth.client that this deployment's registrar selects."""
        return self.stack

    def container(self, service: str) -> Container:
        """The running container of one of the stack's services."""
        return running_container(self.client, f"{self.stack}_{service}")

    def clients(self) -> list[dict[str, Any]]:
        """The client records of the clients API (read from inside the registrar)."""
        records = exec_json(self.container("registrar"), LIST_CLIENTS)
        assert isinstance(records, list)
        return records

    def client_ids(self) -> set[str]:
        """The ids of the registered clients."""
        return {record["client_id"] for record in self.clients()}


@dataclass
class Demo:
    """A deployed deploy/demo/stack.yml."""

    deployment: Deployment
    stack: str
    env: dict[str, str]
    files: list[Path]

    @property
    def caller(self) -> str:
        """The caller's service name, which is also its client id."""
        return f"{self.stack}_caller"

    def deploy(self) -> None:
        """(Re-)deploy the demo stack, as `docker stack deploy` does on every run."""
        deploy_stack(self.stack, self.files, self.env)


def _outcome(client: docker.DockerClient, service: str) -> dict[str, Any] | None:
    """The caller's last outcome, or None while no task of it answers."""
    try:
        outcome = exec_json(running_container(client, service, timeout=5), CALLER_LAST_OUTCOME)
    except (AssertionError, DockerException):
        return None
    assert isinstance(outcome, dict)
    return outcome


def wait_for_call(demo: Demo) -> dict[str, Any]:
    """The caller's first successful call to the callee, waiting for it."""
    client = demo.deployment.client
    last: list[dict[str, Any] | None] = [None]

    def called() -> dict[str, Any] | None:
        last[0] = _outcome(client, demo.caller)
        return last[0] if last[0] and last[0].get("outcome") == "called" else None

    return wait_for(called, 120, 1.0, lambda: f"the caller never called: last {last[0]}")


def wait_for_identity(demo: Demo) -> str:
    """The caller's service id, once its client exists and its secret is attached."""
    client = demo.deployment.client

    def attached() -> str | None:
        service = client.services.get(demo.caller)
        refs = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []
        made = {s.id for s in registrar_secrets(client, [service.id])}
        mounted = made and {ref["SecretID"] for ref in refs} & made
        if mounted and demo.caller in demo.deployment.client_ids():
            return str(service.id)
        return None

    return wait_for(attached, 90, 1.0, f"{demo.caller} never got its identity")


@pytest.fixture(scope="session")
def oauth_image(docker_client: docker.DockerClient, base_image: str, run_id: str) -> Iterator[str]:
    """The deployment image, built with deploy/build-image.sh for this session."""
    tag = f"swarm-oauth:test-{run_id}"
    build_image(base_image, tag)
    yield tag
    with contextlib.suppress(ImageNotFound):
        docker_client.images.remove(tag)


@contextlib.contextmanager
def open_deployment(
    client: docker.DockerClient,
    image: str,
    run_id: str,
    tmp: Path,
    stack: str,
    extra_files: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
) -> Iterator[Deployment]:
    """deploy/stack.yml (with ``extra_files`` merged onto it) deployed as ``stack``, its
    registrar ready; ``env`` adds to or overrides the stack files' variables. Everything
    it made is removed on the way out."""
    before = labelled_ids(client)
    labelled_node = ensure_node_label(client, STORE_NODE_LABEL, "true")
    master_key = base64.urlsafe_b64encode(secrets.token_bytes(32))
    admin_token = secrets.token_urlsafe(32).encode()
    made = [
        client.secrets.create(name=f"{stack}-{kind}", data=data, labels=with_test_label())
        for kind, data in (("master-key", master_key), ("admin-token", admin_token))
    ]
    variables = {
        "SWARM_OAUTH_IMAGE": image,
        "SWARM_OAUTH_MASTER_KEY_SECRET": made[0].name,
        "SWARM_OAUTH_ADMIN_TOKEN_SECRET": made[1].name,
        "SWARM_OAUTH_PUBLIC_NETWORK": f"{stack}-public",
        "SWARM_OAUTH_SELECTOR": f"swarm-oauth.client={stack}",
        # A missed event is caught up by the next pass; keep that wait short here.
        "SWARM_OAUTH_RESYNC_SECONDS": "10",
        # The demo's policy (its caller asks for an audience); the config's name is global.
        "SWARM_OAUTH_POLICY": "demo/policy.yml",
        "SWARM_OAUTH_POLICY_VERSION": stack,
        **(env or {}),
    }
    override = label_override(tmp / "labels.yml", STACK_FILE, run_id, variables, extra_files)
    files = [STACK_FILE, *extra_files, override]
    deployed = Deployment(client, stack, variables, files, [s.id for s in made])
    try:
        deploy_stack(stack, deployed.files, variables)
        wait_for(
            lambda: exec_json(deployed.container("registrar"), REGISTRAR_READY) == 200,
            120,
            1.0,
            f"the registrar of {stack} never became ready",
        )
        yield deployed
    finally:
        problems = remove_stack(client, stack)
        try:
            remove_test_objects(client, keep=before)
        except AssertionError as exc:
            problems.append(str(exc))
        if labelled_node:
            remove_node_label(client, STORE_NODE_LABEL)
        if problems:
            raise AssertionError("deployment cleanup left objects behind:\n" + "\n".join(problems))


@contextlib.contextmanager
def open_demo(
    deployment: Deployment,
    run_id: str,
    tmp: Path,
    caller_labels: Mapping[str, str] | None = None,
) -> Iterator[Demo]:
    """deploy/demo/stack.yml beside ``deployment``, the caller selected by its registrar
    (``caller_labels`` are added to the caller's); removed on the way out."""
    stack = unique_name("demo")
    env = {
        "SWARM_OAUTH_IMAGE": deployment.env["SWARM_OAUTH_IMAGE"],
        "SWARM_OAUTH_PUBLIC_NETWORK": deployment.env["SWARM_OAUTH_PUBLIC_NETWORK"],
        "SWARM_OAUTH_DEMO_CLIENT": deployment.selector_value,
    }
    files = [DEMO_STACK_FILE, label_override(tmp / "labels.yml", DEMO_STACK_FILE, run_id, env)]
    if caller_labels:
        caller = {"version": "3.8", "services": {"caller": {"deploy": {"labels": caller_labels}}}}
        files.append(tmp / "caller.yml")
        files[-1].write_text(json.dumps(caller))  # JSON is YAML
    deployed = Demo(deployment, stack, env, files)
    try:
        deployed.deploy()
        yield deployed
    finally:
        problems = remove_stack(deployment.client, stack)
        if problems:
            raise AssertionError("demo cleanup left objects behind:\n" + "\n".join(problems))


@pytest.fixture(scope="module")
def deployment(
    docker_client: docker.DockerClient,
    oauth_image: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Deployment]:
    """deploy/stack.yml deployed under a unique name, its registrar ready."""
    tmp = tmp_path_factory.mktemp("stack")
    with open_deployment(docker_client, oauth_image, run_id, tmp, unique_name("oauth")) as opened:
        yield opened


@pytest.fixture(scope="module")
def demo(
    deployment: Deployment, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    """deploy/demo/stack.yml beside the deployment, the caller selected by its registrar."""
    with open_demo(deployment, run_id, tmp_path_factory.mktemp("demo")) as opened:
        yield opened


def test_image_runs_unprivileged_with_a_health_check_and_no_secret(
    docker_client: docker.DockerClient, oauth_image: str
) -> None:
    config = docker_client.images.get(oauth_image).attrs["Config"]

    assert config["User"] == "swarm-oauth"
    assert config["Entrypoint"] == ["swarm-oauth"]
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-m", "swarm_oauth.healthcheck"]
    names = {item.partition("=")[0] for item in config["Env"]}
    assert not {n for n in names if any(w in n for w in ("TOKEN", "KEY", "SECRET", "PASSWORD"))}
    probe = docker_cli(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        oauth_image,
        "-c",
        "id -u; command -v gcc cc make || echo no-build-tools",
    ).stdout.split()
    assert probe[0] != "0"
    assert probe[1:] == ["no-build-tools"]


def test_caller_calls_callee_with_its_own_identity(demo: Demo) -> None:
    outcome = wait_for_call(demo)

    assert outcome["status"] == 200
    assert outcome["callee"]["caller"] == demo.caller
    assert outcome["callee"]["audience"] == "callee"
    caller = running_container(demo.deployment.client, demo.caller)
    env = dict(item.partition("=")[::2] for item in caller.attrs["Config"]["Env"])
    assert env["OAUTH_CLIENT_ID"] == demo.caller
    assert env["OAUTH_TOKEN_URL"] == f"{ISSUER}/api/token"
    assert env["OAUTH_CLIENT_SECRET_FILE"] == "/run/secrets/oauth_client_secret"
    # The callee lets nothing through without a token: the success above is the token's.
    refused = exec_json(caller, CALL_CALLEE_WITHOUT_TOKEN)
    assert refused["status"] == 401
    assert refused["www_authenticate"].startswith("Bearer")


def test_only_the_management_network_reaches_the_clients_api(
    deployment: Deployment, demo: Demo
) -> None:
    clients = deployment.container("oauth-clients")
    tokens = deployment.container("oauth-tokens")
    registrar = deployment.container("registrar")
    management = f"{deployment.stack}_service-management"
    public = deployment.env["SWARM_OAUTH_PUBLIC_NETWORK"]
    assert networks_of(clients) == {management}
    assert networks_of(registrar) == {management}
    assert networks_of(tokens) == {public}
    clients_addresses = addresses_of(clients)
    callee = running_container(deployment.client, f"{demo.stack}_callee")

    inside = probe(registrar, resolve=["oauth-clients"], connect=clients_addresses)
    outside = probe(
        callee,
        resolve=["oauth-clients", "registrar", "oauth-tokens"],
        connect=clients_addresses,
        get=[f"{ISSUER}/.well-known/jwks.json", f"{ISSUER}/api/clients"],
    )

    # From the management network the clients API answers at that very address ...
    assert inside["resolve"]["oauth-clients"] == sorted(clients_addresses)
    assert inside["connect"] == {address: "connected" for address in clients_addresses}
    # ... and from a service outside it there is nothing: no name, no route.
    assert outside["resolve"]["oauth-clients"] == "unresolved"
    assert outside["resolve"]["registrar"] == "unresolved"
    assert outside["connect"].keys() == set(clients_addresses)
    assert "connected" not in outside["connect"].values()
    # The token side is what every service reaches, and it serves no admin routes.
    assert outside["resolve"]["oauth-tokens"] == sorted(addresses_of(tokens))
    status, jwks = outside["get"][f"{ISSUER}/.well-known/jwks.json"]
    assert status == 200
    assert jwks["keys"]
    assert outside["get"][f"{ISSUER}/api/clients"][0] == 404


# Inside each part: which secrets it was given, and whether its root filesystem takes a
# write.
SECRETS_AND_ROOT = """
import errno, json, os
try:
    open("/opt/swarm-oauth/planted", "w").close()
    root = "writable"
except OSError as exc:
    root = errno.errorcode[exc.errno]
print(json.dumps({"secrets": sorted(os.listdir("/run/secrets")), "root": root}))
"""


def test_parts_are_read_only_and_only_the_tokens_role_has_the_master_key(
    deployment: Deployment,
) -> None:
    seen = {
        part: exec_json(deployment.container(part), SECRETS_AND_ROOT)
        for part in ("oauth-clients", "oauth-tokens", "registrar")
    }
    assert {part: found["root"] for part, found in seen.items()} == dict.fromkeys(seen, "EROFS")
    assert seen["oauth-clients"]["secrets"] == ["swarm-oauth-admin-token"]
    assert seen["oauth-tokens"]["secrets"] == ["swarm-oauth-master-key"]
    assert seen["registrar"]["secrets"] == ["swarm-oauth-admin-token"]
    for name in (
        f"{deployment.stack}_service-management",
        deployment.env["SWARM_OAUTH_PUBLIC_NETWORK"],
    ):
        network = deployment.client.networks.get(name)
        assert network.attrs["Options"].get("encrypted") == "", network.name


def test_keys_rotate_runs_as_a_one_off_task_that_mounts_the_master_key(
    deployment: Deployment, demo: Demo
) -> None:
    """The job of docs/operations.md, flag for flag, with this deployment's names."""
    name = unique_name("keys")
    callee = running_container(deployment.client, f"{demo.stack}_callee")
    jwks_url = f"{ISSUER}/.well-known/jwks.json"

    def published() -> int:
        status, jwks = probe(callee, get=[jwks_url])["get"][jwks_url]
        assert status == 200
        return len(jwks["keys"])

    before = published()
    secret = deployment.env["SWARM_OAUTH_MASTER_KEY_SECRET"]
    labels = [f"--label={key}={value}" for key, value in with_test_label().items()]
    try:
        docker_cli(
            "service", "create", "--name", name, "--mode", "replicated-job",
            "--detach=false", "--quiet", *labels,
            "--constraint", "node.labels.swarm-oauth.store==true",
            "--mount", f"type=volume,source={deployment.stack}_data,target=/var/lib/swarm-oauth",
            "--secret",
            f"source={secret},target=swarm-oauth-master-key,uid=10001,gid=10001,mode=0400",
            "--env", "SWARM_OAUTH_MASTER_KEY_FILE=/run/secrets/swarm-oauth-master-key",
            "--env", f"SWARM_OAUTH_ISSUER={ISSUER}",
            "--read-only", deployment.env["SWARM_OAUTH_IMAGE"], "keys", "rotate",
            timeout=180,
        )  # fmt: skip
        tasks = deployment.client.api.tasks(filters={"service": name})
        assert [task["Status"]["State"] for task in tasks] == ["complete"]
        assert '"kid"' in docker_cli("service", "logs", "--raw", name).stdout
    finally:
        docker_cli("service", "rm", name)
        # A finished job's container stays on its node, and with it a hold on the volume.
        job = {"label": f"com.docker.swarm.service.name={name}"}
        for container in deployment.client.containers.list(all=True, filters=job):
            with contextlib.suppress(NotFound):  # unless Docker removed it meanwhile
                container.remove(force=True)
    # Published at once, and every server process follows the store within a second.
    wait_for(lambda: published() == before + 1, 30, 1.0, "the new key was never published")


def test_removing_the_caller_removes_its_client_and_its_secret(demo: Demo) -> None:
    client = demo.deployment.client
    service_id = wait_for_identity(demo)
    made = registrar_secrets(client, [service_id])
    assert made

    client.services.get(service_id).remove()

    wait_for(
        lambda: demo.caller not in demo.deployment.client_ids(),
        60,
        1.0,
        f"client {demo.caller} outlived its service",
    )
    wait_for(
        lambda: not registrar_secrets(client, [service_id]),
        60,
        0.5,
        f"the Docker secrets of {demo.caller} outlived it",
    )
    assert client.services.get(f"{demo.stack}_callee")  # the unselected callee stays

    # Deployed again, the caller is a new service and gets a new client and secret.
    demo.deploy()
    new_id = wait_for_identity(demo)
    assert new_id != service_id
    record = next(r for r in demo.deployment.clients() if r["client_id"] == demo.caller)
    assert record["metadata"]["service_id"] == new_id
    assert {s.id for s in registrar_secrets(client, [new_id])}.isdisjoint({s.id for s in made})


def test_stack_rm_leaves_no_secret_and_no_client_behind(deployment: Deployment, demo: Demo) -> None:
    client = deployment.client
    wait_for_identity(demo)
    demo_ids = [s.id for s in stack_objects(client, demo.stack)["service"]]
    oauth_ids = [s.id for s in stack_objects(client, deployment.stack)["service"]]
    assert registrar_secrets(client, demo_ids)

    docker_cli("stack", "rm", demo.stack)

    wait_for(lambda: not deployment.clients(), 60, 1.0, "clients outlived the demo stack")
    wait_for(
        lambda: (
            not registrar_secrets(client, demo_ids)
            and not any(stack_objects(client, demo.stack).values())
        ),
        60,
        0.5,
        "Docker secrets or objects outlived the demo stack",
    )

    docker_cli("stack", "rm", deployment.stack)

    wait_for(
        lambda: not any(stack_objects(client, deployment.stack).values()),
        60,
        0.5,
        f"objects of {deployment.stack} outlived docker stack rm",
    )
    assert not registrar_secrets(client, demo_ids + oauth_ids)
    # The operator's own secrets are external to the stack: they stay for the next deploy.
    assert {s.id for s in client.secrets.list()} >= set(deployment.secret_ids)


def test_swarm_listener_alone_gives_the_demo_caller_its_identity_and_takes_it_away(
    docker_client: docker.DockerClient,
    oauth_image: str,
    swarm_listener_image: str,
    run_id: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # The swarm-listener image built from source, as a swarm without registry access
    # would. The registrar follows no events and makes no periodic pass, and its start
    # pass is over before the demo exists: only swarm-listener can tell it about the
    # caller. Its label (a value of true, which swarm-listener needs) is unique to this
    # deployment, so no other registrar or swarm-listener on the engine acts on it.
    stack = unique_name("oauth")
    label = f"swarm-oauth.test-{stack}"
    env = {
        "SWARM_LISTENER_IMAGE": swarm_listener_image,
        "SWARM_OAUTH_LISTENER_NOTIFY_LABEL": label,
        "SWARM_OAUTH_SELECTOR": f"{label}=true",
        "SWARM_OAUTH_EVENTS": "false",
        "SWARM_OAUTH_RESYNC_SECONDS": "86400",
    }
    tmp = tmp_path_factory.mktemp("listener-stack")
    with open_deployment(
        docker_client, oauth_image, run_id, tmp, stack, [LISTENER_STACK_FILE], env
    ) as deployment:
        wait_for(
            lambda: exec_json(deployment.container("registrar"), START_PASS_DONE),
            60,
            1.0,
            "the registrar's start pass never finished",
        )
        listener = deployment.container("swarm-listener")
        demo_tmp = tmp_path_factory.mktemp("listener-demo")
        with open_demo(deployment, run_id, demo_tmp, caller_labels={label: "true"}) as demo:
            outcome = wait_for_call(demo)
            assert (outcome["status"], outcome["callee"]["caller"]) == (200, demo.caller)
            service_id = wait_for_identity(demo)

            docker_cli("stack", "rm", demo.stack)

            wait_for(
                lambda: demo.caller not in deployment.client_ids(),
                60,
                1.0,
                f"client {demo.caller} outlived its service",
            )
            wait_for(
                lambda: not registrar_secrets(docker_client, [service_id]),
                60,
                0.5,
                f"the Docker secrets of {demo.caller} outlived it",
            )
        sent = listener.logs().decode(errors="replace")
        for kind in ("created", "removed"):
            assert f"Sending service {kind} notification to http://registrar:8081/" in sent
        assert f"serviceName={demo.caller}" in sent
