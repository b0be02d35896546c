"""Helpers for the deployment tests: build the image, deploy and remove stacks, look inside.

Plain functions, no fixtures: the tests in tests/swarm/test_deploy*.py make their own
fixtures from them. Every stack a test deploys is deployed with an override file (made by
``label_override``) that puts this session's test label on its services, containers,
networks and volumes, so ``remove_test_objects`` and ``remove_stack`` find them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import docker
import yaml
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container

from tests.support.swarm import LABEL, exec_in, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = ROOT / "deploy"
STACK_FILE = DEPLOY_DIR / "stack.yml"
DEMO_STACK_FILE = DEPLOY_DIR / "demo" / "stack.yml"
LISTENER_STACK_FILE = DEPLOY_DIR / "stack.swarm-listener.yml"
STACK_NAMESPACE = "com.docker.stack.namespace"
# The labels the registrar puts on the Docker secrets it makes (registrar/spec.py).
MANAGED_SECRET = "swarm-oauth.managed-by=registrar"
SECRET_SERVICE_LABEL = "swarm-oauth.service-id"
# The node label deploy/stack.yml pins the SQLite-sharing servers to.
STORE_NODE_LABEL = "swarm-oauth.store"


def docker_cli(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; ``AssertionError`` with its output if it fails."""
    result = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
        )
    return result


def build_image(base_image: str, tag: str) -> None:
    """Build the image as a user would, with deploy/build-image.sh, from fresh wheels.

    The wheels are downloaded with this interpreter's pip (the host's ``python3`` may
    have none).
    """
    env = {
        "BASE_IMAGE": base_image,
        "IMAGE": tag,
        "REBUILD_WHEELS": "1",
        "PIP": f"{sys.executable} -m pip",
    }
    run_script(DEPLOY_DIR / "build-image.sh", env)


def run_script(script: Path, env: Mapping[str, str], timeout: float = 900) -> str:
    """Run the bash ``script`` with ``env`` added to the environment; its stdout.
    ``AssertionError`` with its output if it fails."""
    result = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
        check=False,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} failed:\n{result.stdout[-4000:]}{result.stderr}")
    return result.stdout


def stack_config(*files: Path, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The merged stack of ``files`` as ``docker stack config`` resolves it."""
    args = [arg for path in files for arg in ("-c", str(path))]
    loaded = yaml.safe_load(docker_cli("stack", "config", *args, env=env).stdout)
    assert isinstance(loaded, dict)
    return loaded


def label_override(
    path: Path,
    stack_file: Path,
    run_id: str,
    env: Mapping[str, str],
    extra_files: Iterable[Path] = (),
) -> Path:
    """Write an override that labels every object ``stack_file`` (with ``extra_files``
    merged onto it) defines for this session.

    Networks and volumes that the stack only refers to (``external``) are left alone.
    """
    config = stack_config(stack_file, *extra_files, env=env)
    labels = {LABEL: run_id}
    override: dict[str, Any] = {
        "version": config["version"],
        "services": {
            name: {"labels": labels, "deploy": {"labels": labels}} for name in config["services"]
        },
    }
    # A top-level network or volume in an override replaces the base's whole entry, so
    # each is repeated as resolved, with the labels added.
    for kind in ("networks", "volumes"):
        owned = {
            name: {**(spec or {}), "labels": {**((spec or {}).get("labels") or {}), **labels}}
            for name, spec in (config.get(kind) or {}).items()
            if not (spec or {}).get("external")
        }
        if owned:
            override[kind] = owned
    path.write_text(json.dumps(override, indent=2))  # JSON is YAML
    return path


def deploy_stack(name: str, files: Iterable[Path], env: Mapping[str, str]) -> None:
    """``docker stack deploy`` of ``files`` as stack ``name``, with ``env`` for the files'
    variables; the image is local, so no registry is asked about it."""
    args = [arg for path in files for arg in ("-c", str(path))]
    docker_cli("stack", "deploy", "--resolve-image", "never", *args, name, env=env)


def stack_objects(client: docker.DockerClient, name: str) -> dict[str, list[Any]]:
    """The services, configs, secrets and networks Docker still lists for stack ``name``."""
    filters = {"label": f"{STACK_NAMESPACE}={name}"}
    return {
        "service": client.services.list(filters=filters),
        "config": client.configs.list(filters=filters),
        "secret": client.secrets.list(filters=filters),
        "network": client.networks.list(filters=filters),
    }


def registrar_secrets(client: docker.DockerClient, service_ids: Iterable[str]) -> list[Any]:
    """The Docker secrets the registrar made for any of these services."""
    wanted = set(service_ids)
    return [
        secret
        for secret in client.secrets.list(filters={"label": MANAGED_SECRET})
        if (secret.attrs["Spec"].get("Labels") or {}).get(SECRET_SERVICE_LABEL) in wanted
    ]


def _remove_with_retry(objects: Iterable[Any], timeout: float) -> list[str]:
    """Remove ``objects``, retrying those still in use; describe those never removed."""
    pending = list(objects)
    deadline = time.monotonic() + timeout
    errors: dict[int, str] = {}
    while pending:
        for obj in list(pending):
            try:
                obj.remove()
            except NotFound:
                pass
            except APIError as exc:
                errors[id(obj)] = str(exc)
                continue
            pending.remove(obj)
        if pending and time.monotonic() >= deadline:
            return [f"{obj.name}: {errors[id(obj)]}" for obj in pending]
        if pending:
            time.sleep(0.5)
    return []


def remove_stack(client: docker.DockerClient, name: str, timeout: float = 60.0) -> list[str]:
    """Remove stack ``name`` and whatever it left, including its volumes and the secrets
    the registrar made for its services; describe whatever could not be removed.

    ``docker stack rm`` returns before Docker has removed the objects; this waits.
    """
    problems: list[str] = []
    try:
        service_ids = [service.id for service in stack_objects(client, name)["service"]]
        made = registrar_secrets(client, service_ids)
        docker_cli("stack", "rm", name)
        try:
            wait_for(
                lambda: not any(stack_objects(client, name).values()),
                timeout,
                0.5,
                lambda: f"stack {name} still has {stack_objects(client, name)}",
            )
        except AssertionError as exc:
            problems.append(str(exc))
        problems += _remove_with_retry(made, timeout)
        volumes = client.volumes.list(filters={"label": f"{STACK_NAMESPACE}={name}"})
        problems += _remove_with_retry(volumes, timeout)
    except (DockerException, AssertionError) as exc:
        problems.append(f"removing stack {name}: {exc}")
    return problems


def ensure_node_label(client: docker.DockerClient, key: str, value: str) -> bool:
    """Put ``key=value`` on this node unless it is there; True if this call added it."""
    node_id = client.info()["Swarm"]["NodeID"]
    for _ in range(10):
        node = client.nodes.get(node_id)
        spec = node.attrs["Spec"]
        labels = spec.setdefault("Labels", {})
        if labels.get(key) == value:
            return False
        labels[key] = value
        try:
            node.update(spec)
            return True
        except APIError as exc:  # "update out of sequence": someone else wrote the node
            if "out of sequence" not in str(exc):
                raise
    raise AssertionError(f"could not label node {node_id} with {key}={value}")


def remove_node_label(client: docker.DockerClient, key: str) -> None:
    """Take ``key`` off this node's labels."""
    node_id = client.info()["Swarm"]["NodeID"]
    for _ in range(10):
        node = client.nodes.get(node_id)
        spec = node.attrs["Spec"]
        if key not in (spec.get("Labels") or {}):
            return
        del spec["Labels"][key]
        try:
            node.update(spec)
            return
        except APIError as exc:
            if "out of sequence" not in str(exc):
                raise
    raise AssertionError(f"could not remove label {key} from node {node_id}")


def exec_json(container: Container, script: str, *args: str) -> Any:
    """Run a Python ``script`` (with ``args``) in ``container``; return the JSON of the
    last line it printed."""
    code, output = exec_in(container, ["python", "-c", script, *args])
    assert code == 0, f"script failed in {container.name} (exit {code}):\n{output}"
    return json.loads(output.strip().splitlines()[-1])


def networks_of(container: Container) -> set[str]:
    """Names of the networks ``container`` is attached to."""
    container.reload()
    return set(container.attrs["NetworkSettings"]["Networks"])


def addresses_of(container: Container) -> list[str]:
    """The container's IP addresses, one per network."""
    container.reload()
    return [n["IPAddress"] for n in container.attrs["NetworkSettings"]["Networks"].values()]
