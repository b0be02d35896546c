"""The stack's PostgreSQL image (deploy/postgres), run by the real Docker Engine: the
cluster is set up on the first start under a role that is no superuser, a set-up cut
short is finished at the next start, and the password stays out of the server's
environment."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import docker
import pytest
from docker.errors import NotFound
from docker.models.containers import Container
from docker.models.volumes import Volume

from tests.support.swarm import wait_for

DATA = "/var/lib/postgresql/data"
PASSWORD = "a-test-password"
SET_UP = "postgres-entrypoint: set up the cluster"


@pytest.fixture
def volume(docker_client: docker.DockerClient, swarm_labels: dict[str, str]) -> Iterator[Volume]:
    """A data volume of this test, removed afterwards with the containers that used it."""
    made = docker_client.volumes.create(labels=swarm_labels)
    yield made
    for container in docker_client.containers.list(all=True, filters={"volume": made.name}):
        with contextlib.suppress(NotFound):
            container.remove(force=True)
    made.remove(force=True)


def start(
    client: docker.DockerClient, image: str, volume: Volume, labels: dict[str, str], **env: str
) -> Container:
    """The image started on ``volume`` with the settings ``env``."""
    return client.containers.run(
        image,
        detach=True,
        environment=env,
        volumes={volume.name: {"bind": DATA, "mode": "rw"}},
        labels=labels,
    )


def psql_as_the_role(container: Container) -> tuple[int, str]:
    """A query over TCP with the role's password, as the token servers connect."""
    code, output = container.exec_run(
        ["psql", "--no-psqlrc", "-h", "127.0.0.1", "-U", "swarm_oauth", "-d", "swarm_oauth",
         "-Atc", "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user"],
        environment={"PGPASSWORD": PASSWORD},
    )  # fmt: skip
    return code, output.decode(errors="replace").strip()


def test_a_set_up_cut_short_is_finished_at_the_next_start(
    docker_client: docker.DockerClient,
    postgres_image: str,
    swarm_labels: dict[str, str],
    volume: Volume,
) -> None:
    # A role name PostgreSQL reserves: the cluster is made, then the set-up fails.
    first = start(
        docker_client, postgres_image, volume, swarm_labels,
        POSTGRES_USER="pg_reserved", POSTGRES_PASSWORD=PASSWORD,
    )  # fmt: skip
    assert first.wait(timeout=120)["StatusCode"] != 0
    assert "reserved" in first.logs().decode(errors="replace")
    first.remove()

    # The operator fixes the setting; the same volume now holds a cluster without a role.
    second = start(
        docker_client, postgres_image, volume, swarm_labels,
        POSTGRES_USER="swarm_oauth", POSTGRES_DB="swarm_oauth", POSTGRES_PASSWORD=PASSWORD,
    )  # fmt: skip
    wait_for(
        lambda: psql_as_the_role(second)[0] == 0, 60, 0.5, lambda: str(psql_as_the_role(second))
    )
    assert psql_as_the_role(second) == (0, "swarm_oauth|f")
    _, environ = second.exec_run(["cat", "/proc/1/environ"])
    assert b"postgres" in environ  # pid 1 is the server, exec'd by the entrypoint
    assert b"POSTGRES_PASSWORD=" not in environ
    assert PASSWORD.encode() not in environ

    # Set up once: a restart starts the server on the cluster as it is.
    second.restart(timeout=30)
    wait_for(
        lambda: psql_as_the_role(second)[0] == 0, 60, 0.5, lambda: str(psql_as_the_role(second))
    )
    assert second.logs().decode(errors="replace").count(SET_UP) == 1
