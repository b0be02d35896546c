"""The swarm fixtures themselves, on the real engine: what later swarm tests stand on."""

from __future__ import annotations

import docker
import pytest
from docker.types import EndpointSpec, SecretReference

from tests.support.swarm import (
    LABEL,
    RUN_ID,
    SERVICE_ID_LABEL,
    create_service,
    exec_in,
    labelled_ids,
    remove_test_objects,
    running_container,
    unique_name,
)

pytestmark = pytest.mark.docker


def test_labelled_service_runs_and_exec_reports_output_and_exit_code(
    docker_client: docker.DockerClient, base_image: str, swarm_cleanup: None
) -> None:
    name = unique_name("infra-run")
    service = create_service(docker_client, name, {"purpose": "infrastructure"})

    container = running_container(docker_client, name)

    spec = docker_client.services.get(service.id).attrs["Spec"]
    assert spec["Labels"] == {"purpose": "infrastructure", LABEL: RUN_ID}
    assert spec["TaskTemplate"]["ContainerSpec"]["Init"] is True
    assert container.labels[LABEL] == RUN_ID
    assert container.labels[SERVICE_ID_LABEL] == service.id
    assert exec_in(container, ["python3", "-c", "print(6 * 7)"]) == (0, "42\n")
    assert exec_in(container, ["sh", "-c", "echo oops >&2; exit 3"]) == (3, "oops\n")


def test_cleanup_removes_what_the_test_made_and_keeps_the_rest(
    docker_client: docker.DockerClient, base_image: str, swarm_cleanup: None
) -> None:
    labels = {LABEL: RUN_ID}
    # Stands for an object of a wider-scoped fixture, made before the test's snapshot.
    kept = docker_client.secrets.create(name=unique_name("infra-kept"), data=b"k", labels=labels)
    foreign = docker_client.secrets.create(
        name=unique_name("infra-foreign"), data=b"f", labels={LABEL: f"{RUN_ID}-other"}
    )
    try:
        before = labelled_ids(docker_client)
        network = docker_client.networks.create(
            unique_name("infra-net"), driver="overlay", labels=labels
        )
        secret = docker_client.secrets.create(
            name=unique_name("infra-secret"), data=b"s3cr3t", labels=labels
        )
        name = unique_name("infra-clean")
        service = create_service(
            docker_client,
            name,
            networks=[network.id],
            endpoint_spec=EndpointSpec(mode="dnsrr"),
            secrets=[SecretReference(secret.id, secret.name, filename="probe")],
        )
        # What the registrar would make for this service: its id, but no test label.
        made_for_service = docker_client.secrets.create(
            name=unique_name("infra-registrar"),
            data=b"r",
            labels={"swarm-oauth.service-id": service.id},
        )
        container = running_container(docker_client, name)
        assert exec_in(container, ["cat", "/run/secrets/probe"]) == (0, "s3cr3t")

        remove_test_objects(docker_client, keep=before)

        assert labelled_ids(docker_client) == {kept.id}
        remaining = {s.id for s in docker_client.secrets.list()}
        assert {secret.id, made_for_service.id}.isdisjoint(remaining)
        assert {kept.id, foreign.id} <= remaining
        assert not docker_client.containers.list(
            all=True, filters={"label": f"{SERVICE_ID_LABEL}={service.id}"}
        )
        assert not docker_client.networks.list(filters={"id": network.id})
    finally:
        foreign.remove()
