"""Fixtures and helpers for tests against the real Docker Engine in swarm mode.

Every object a test creates carries the label ``swarm-oauth.test=<run id>`` (one id per
pytest process), and is removed by that label: after each test that asks for
``swarm_cleanup``, and at the end of the session. Other pytest sessions on the same engine
use other run ids and are never touched. See docs/testing.md for the engine's limits.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest
from docker.errors import APIError, DockerException, NotFound
from docker.models.containers import Container
from docker.models.services import Service

from tests.support.requirements import unavailable

LABEL = "swarm-oauth.test"
RUN_ID = secrets.token_hex(4)
BASE_IMAGE = os.environ.get("BASE_IMAGE", "local/python-base:trixie")
BASE_IMAGE_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "base-image.sh"
# Docker's own label on every task container, naming the service it belongs to.
SERVICE_ID_LABEL = "com.docker.swarm.service.id"
# The prefix of the labels the registrar puts on the Docker secrets it makes.
PROJECT_LABEL_PREFIX = "swarm-oauth."

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    interval: float = 0.2,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that.

    Raises ``AssertionError`` with ``message`` (a string, or a function called at timeout so
    the message can describe the state then) if ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:g} s)")
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    """A name for a Docker object that no other test or session uses."""
    return f"{prefix}-{RUN_ID}-{secrets.token_hex(3)}"


def with_test_label(labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """``labels`` plus this session's test label."""
    return {**(labels or {}), LABEL: RUN_ID}


def create_service(
    client: docker.DockerClient,
    name: str,
    labels: Mapping[str, str] | None = None,
    image: str = BASE_IMAGE,
    command: Sequence[str] = ("sleep", "infinity"),
    **kwargs: Any,
) -> Service:
    """Create a swarm service labelled for this session (service and containers).

    ``kwargs`` go to ``client.services.create`` (``env``, ``secrets``, ``networks``,
    ``endpoint_spec``, ...). ``init`` defaults to True, so removal does not wait 10 s for
    PID 1. The SDK never asks a registry to resolve the image (that is the CLI's
    ``--no-resolve-image``), so the locally built base image works as it is; ask for the
    ``base_image`` fixture so that it exists. On an overlay network, pass
    ``endpoint_spec=EndpointSpec(mode="dnsrr")``: this kernel lacks IPVS.
    """
    kwargs.setdefault("init", True)
    return client.services.create(
        image,
        command=list(command),
        name=name,
        labels=with_test_label(labels),
        container_labels=with_test_label(kwargs.pop("container_labels", None)),
        **kwargs,
    )


def _task_summary(client: docker.DockerClient, service_name: str) -> str:
    try:
        tasks = client.api.tasks(filters={"service": service_name})
    except DockerException as exc:
        return f"tasks of {service_name} unreadable: {exc}"
    states = [
        f"{t['Status']['State']}/{t['DesiredState']} {t['Status'].get('Err', '')}".strip()
        for t in tasks
    ]
    return f"tasks of {service_name}: {states or 'none'}"


def running_container(
    client: docker.DockerClient, service_name: str, timeout: float = 60.0
) -> Container:
    """The container of the newest running task of ``service_name`` on this node.

    Waits for one: a service update (such as a secret being attached) replaces the task, and
    only a task both desired and reported running counts.
    """
    node_id = client.info()["Swarm"]["NodeID"]

    def find() -> Container | None:
        tasks = client.api.tasks(
            filters={"service": service_name, "node": node_id, "desired-state": "running"}
        )
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        for task in sorted(running, key=lambda t: t["CreatedAt"], reverse=True):
            try:
                container = client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])
            except NotFound:
                continue
            if container.status == "running":
                return container
        return None

    return wait_for(
        find,
        timeout,
        interval=0.3,
        message=lambda: f"no running container: {_task_summary(client, service_name)}",
    )


def exec_in(container: Container, cmd: str | Sequence[str]) -> tuple[int, str]:
    """Run ``cmd`` in ``container``; return its exit code and its stdout and stderr."""
    result = container.exec_run(cmd if isinstance(cmd, str) else list(cmd))
    return int(result.exit_code), result.output.decode(errors="replace")


def _labelled(client: docker.DockerClient, run_id: str) -> dict[str, list[Any]]:
    """The labelled objects by kind, in the order they must be removed (a container that
    goes while it is listed, another session's cleanup, is no error)."""
    filters = {"label": f"{LABEL}={run_id}"}
    return {
        "service": client.services.list(filters=filters),
        "container": client.containers.list(all=True, filters=filters, ignore_removed=True),
        "secret": client.secrets.list(filters=filters),
        "network": client.networks.list(filters=filters),
    }


def labelled_ids(client: docker.DockerClient, run_id: str = RUN_ID) -> set[str]:
    """Ids of the services, containers, secrets and networks labelled with ``run_id``."""
    return {obj.id for objects in _labelled(client, run_id).values() for obj in objects}


def _made_for(secret: Any, service_ids: Collection[str]) -> bool:
    labels = secret.attrs["Spec"].get("Labels") or {}
    return any(
        key.startswith(PROJECT_LABEL_PREFIX) and value in service_ids
        for key, value in labels.items()
    )


def _remove_all(objects: Iterable[Any], kind: str, timeout: float, **kwargs: Any) -> list[str]:
    """Remove ``objects``, retrying those still in use; describe those never removed."""
    deadline = time.monotonic() + timeout
    pending = list(objects)
    errors: dict[str, str] = {}
    while True:
        for obj in list(pending):
            try:
                obj.remove(**kwargs)
            except NotFound:
                pass
            except APIError as exc:
                errors[obj.id] = str(exc)
                continue
            pending.remove(obj)
        if not pending:
            return []
        if time.monotonic() >= deadline:
            return [f"{kind} {obj.name}: {errors[obj.id]}" for obj in pending]
        time.sleep(0.5)


def _tasks_gone(client: docker.DockerClient, service_ids: Collection[str]) -> bool:
    # A removed service's task can still be preparing and create its container later, so
    # the tasks themselves are awaited, not only the containers seen so far.
    if any(task["ServiceID"] in service_ids for task in client.api.tasks()):
        return False
    return not any(
        client.containers.list(
            all=True, filters={"label": f"{SERVICE_ID_LABEL}={service_id}"}, ignore_removed=True
        )
        for service_id in service_ids
    )


def remove_test_objects(
    client: docker.DockerClient,
    run_id: str = RUN_ID,
    keep: Collection[str] = (),
    timeout: float = 60.0,
) -> None:
    """Remove every service, container, secret and network labelled with ``run_id``.

    Objects whose id is in ``keep`` stay. Services go first and their task containers are
    awaited, since a secret or network in use cannot be removed. Secrets and configs the
    registrar made for a removed service go too: they carry the service's id under a
    ``swarm-oauth.`` label, not the test label. Everything is attempted; whatever could not
    be removed is reported at the end in one ``AssertionError``, so a leak shows without
    hiding the rest.
    """
    problems: list[str] = []
    try:
        found = {
            kind: [obj for obj in objects if obj.id not in keep]
            for kind, objects in _labelled(client, run_id).items()
        }
        service_ids = {service.id for service in found["service"]}
        found["secret"] += [
            secret
            for secret in client.secrets.list()
            if secret.id not in keep and _made_for(secret, service_ids)
        ]
        found["config"] = [
            config
            for config in client.configs.list()
            if config.id not in keep and _made_for(config, service_ids)
        ]
        problems += _remove_all(found.pop("service"), "service", timeout)
        try:
            wait_for(lambda: _tasks_gone(client, service_ids), timeout, 0.3, "tasks remain")
        except AssertionError as exc:
            problems.append(str(exc))
        problems += _remove_all(found.pop("container"), "container", timeout, force=True)
        for kind, objects in found.items():
            problems += _remove_all({obj.id: obj for obj in objects}.values(), kind, timeout)
    except DockerException as exc:
        problems.append(f"cleanup interrupted: {exc}")
    if problems:
        raise AssertionError("swarm cleanup left objects behind:\n" + "\n".join(problems))


@pytest.fixture(scope="session")
def run_id() -> str:
    """This pytest session's id, the value of every test object's ``swarm-oauth.test``."""
    return RUN_ID


@pytest.fixture(scope="session")
def swarm_labels(run_id: str) -> dict[str, str]:
    """The labels that mark a Docker object as this session's test object."""
    return {LABEL: run_id}


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A client of the local engine, which must be an active swarm manager.

    At the end of the session every object labelled with this session's run id is removed.
    """
    try:
        client = docker.from_env()
        client.ping()
        swarm = client.info().get("Swarm") or {}
    except DockerException as exc:
        unavailable(f"no Docker Engine answers ({exc}); start one with .ci/docker-up.sh")
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        client.close()
        unavailable(
            "the Docker Engine is not an active swarm manager "
            f"(state {swarm.get('LocalNodeState')!r}); run .ci/docker-up.sh"
        )
    try:
        yield client
    finally:
        try:
            remove_test_objects(client)
        finally:
            client.close()


@pytest.fixture
def swarm_cleanup(docker_client: docker.DockerClient) -> Iterator[None]:
    """Remove, after the test, the labelled objects created while it ran.

    Objects that existed before (made by wider-scoped fixtures) stay for later tests.
    """
    before = labelled_ids(docker_client)
    yield
    remove_test_objects(docker_client, keep=before)


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> str:
    """The name of the local Python base image, built with .ci/base-image.sh if missing."""
    try:
        docker_client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except NotFound:
        pass
    if shutil.which("mmdebstrap") is None:
        unavailable(f"image {BASE_IMAGE} is missing and mmdebstrap is not installed")
    result = subprocess.run(
        ["bash", str(BASE_IMAGE_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BASE_IMAGE": BASE_IMAGE},
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{BASE_IMAGE_SCRIPT} failed:\n{result.stdout}{result.stderr}")
    return BASE_IMAGE
