"""The few Docker swarm helpers the registration benchmark needs: create services labelled
with this run's id, wait for a condition, and remove what the run left behind.

The benchmark keeps its own (the test suite has richer ones): benchmarks import nothing
from the tests.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import docker
from docker.errors import APIError, NotFound
from docker.models.services import Service

LABEL = "swarm-oauth.bench"
RUN_ID = secrets.token_hex(4)
BASE_IMAGE = os.environ.get("BASE_IMAGE", "local/python-base:trixie")
REGISTRAR_SERVICE_LABEL = "swarm-oauth.service-id"

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T], timeout: float, interval: float = 0.2, message: str = "timeout"
) -> T:
    """Call ``predicate`` until it returns something truthy and return that."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message} (waited {timeout:g} s)")
        time.sleep(interval)
    return result


def create_service(
    client: docker.DockerClient, name: str, labels: Mapping[str, str], **kwargs: Any
) -> Service:
    """A service of this run: ``sleep infinity`` on the base image, with ``init``."""
    return client.services.create(
        BASE_IMAGE,
        command=["sleep", "infinity"],
        name=name,
        labels={**labels, LABEL: RUN_ID},
        init=True,
        **kwargs,
    )


def remove_run_objects(client: docker.DockerClient, run_id: str, timeout: float) -> None:
    """Remove this run's services, then the Docker secrets the registrar made for them."""
    services = client.services.list(filters={"label": f"{LABEL}={run_id}"})
    ids = {service.id for service in services}
    for service in services:
        with contextlib.suppress(NotFound):
            service.remove()
    wait_for(
        lambda: not any(task["ServiceID"] in ids for task in client.api.tasks()),
        timeout,
        0.5,
        "the run's tasks did not go",
    )
    for secret in client.secrets.list():
        if (secret.attrs["Spec"].get("Labels") or {}).get(REGISTRAR_SERVICE_LABEL) in ids:
            with contextlib.suppress(NotFound, APIError):
                secret.remove()
