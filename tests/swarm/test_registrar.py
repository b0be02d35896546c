"""The registrar's reconcile on the real swarm, run in-process so a test can stop it
between two steps (the crash cases) and count its Docker writes.

The end-to-end path through ``swarm-oauth registrar`` is in test_registrar_e2e.py.
Services are selected by ``swarm-oauth.client=<run id>``, so registrars of other test
sessions on the same engine never manage them (and this one never manages theirs).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest

from swarm_oauth.registrar.clients_api import ClientsAPI
from swarm_oauth.registrar.docker_swarm import DockerSwarm
from swarm_oauth.registrar.model import ObservedService, SecretRef
from swarm_oauth.registrar.reconcile import Outcome
from tests.support.registrar import InProcessRegistrar, crash_at, registrar_factory
from tests.support.rig import SELECTOR_KEY, TARGET, Rig, open_rig
from tests.support.swarm import (
    create_service,
    exec_in,
    running_container,
    unique_name,
    wait_for,
    with_test_label,
)

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def rig(
    docker_client: docker.DockerClient, base_image: str, run_id: str, tmp_path_factory: Any
) -> Iterator[Rig]:
    """One token server for the whole module."""
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("registrar")) as opened:
        yield opened


@pytest.fixture
def swarm_port(rig: Rig) -> DockerSwarm:
    """The Docker adapter every reconciler of a test shares; it counts their writes."""
    return DockerSwarm(rig.docker.api)


@pytest.fixture
def reconcilers(rig: Rig, swarm_port: DockerSwarm) -> Iterator[Callable[..., InProcessRegistrar]]:
    """Make in-process registrars on the real engine and server; closed after the test."""
    with registrar_factory(
        swarm_port,
        lambda: ClientsAPI(rig.clients_url, rig.server.admin_token),
        selector=rig.selector,
        token_url=rig.token_url,
    ) as make:
        yield make


def test_a_selected_service_gets_a_working_identity(rig, reconcilers, swarm_port, swarm_cleanup):
    name = rig.service("reg-basic", rig.labels(**{"swarm-oauth.scopes": "read write"}))
    reconciler = reconcilers()
    assert reconciler.hint(name) is Outcome.CHANGED
    identity = rig.identity(name)
    assert identity.client["scopes"] == ["read", "write"]
    claims = rig.token_from_container(name)
    assert (claims["sub"], claims["client_id"], claims["scope"]) == (name, name, "read write")
    before = dict(swarm_port.writes)
    assert reconciler.hint(name) is Outcome.UNCHANGED
    assert swarm_port.writes == before


def test_the_secret_file_has_the_owner_and_mode_the_labels_ask_for(rig, reconcilers, swarm_cleanup):
    labels = {"swarm-oauth.secret-uid": "1000", "swarm-oauth.secret-gid": "1001",
              "swarm-oauth.secret-mode": "0400"}  # fmt: skip
    name = rig.service("reg-mode", rig.labels(**labels))
    assert reconcilers().hint(name) is Outcome.CHANGED
    wanted = {"Name": TARGET, "UID": "1000", "GID": "1001", "Mode": 0o400}
    rig.identity(name, file=wanted)

    def mounted() -> str | None:
        container = running_container(rig.docker, name)
        code, output = exec_in(container, ["stat", "-c", "%u %g %a", f"/run/secrets/{TARGET}"])
        return output.strip() if code == 0 else None

    assert wait_for(mounted, 60, 0.5, "no container has the secret") == "1000 1001 400"


def test_an_unselected_service_is_left_exactly_as_it_was(rig, reconcilers, swarm_cleanup):
    other = rig.labels()
    other[SELECTOR_KEY] = "someone-else"
    name = rig.service("reg-plain", other, env=["A=1"])
    before = rig.docker.api.inspect_service(name)
    reconciler = reconcilers()
    assert reconciler.hint(name) is Outcome.IGNORED
    reconciler.full_pass()
    after = rig.docker.api.inspect_service(name)
    assert (after["Version"], after["Spec"]) == (before["Version"], before["Spec"])
    assert rig.secrets_of(before["ID"]) == [] and rig.client(name) is None


@pytest.mark.parametrize("step", ["add_client", "create_secret", "update_service"])
def test_a_crash_between_steps_is_repaired_by_the_next_pass(rig, reconcilers, swarm_cleanup, step):
    name = rig.service(f"reg-crash-{step.split('_')[0]}")
    if step == "update_service":
        # "attached but old generation still present": start from a converged service
        # whose client secret was rotated, so the next run makes a new generation.
        reconcilers().hint(name)
        with rig.server.admin() as admin:
            admin.post("/api/clients/rotate", json={"client_id": name}).raise_for_status()
    crashing = reconcilers(after_step=crash_at(step))
    assert crashing.hint(name) is Outcome.FAILED
    service_id = rig.docker.api.inspect_service(name)["ID"]
    left = {
        "add_client": lambda: rig.client(name) and not rig.secrets_of(service_id),
        "create_secret": lambda: len(rig.secrets_of(service_id)) == 1,
        "update_service": lambda: len(rig.secrets_of(service_id)) == 2,
    }
    assert left[step](), f"the crash after {step} did not leave the expected state"
    version_before = rig.client(name)["secret_version"]

    reconcilers().full_pass()

    identity = rig.identity(name)
    # Only a lost clear secret costs a rotation; a created Docker secret is reused.
    expected = version_before + 1 if step == "add_client" else version_before
    assert identity.client["secret_version"] == expected
    assert [s["ID"] for s in rig.secrets_of_client(name)] == [identity.secret["ID"]]
    assert rig.token_from_container(name)["sub"] == name


def test_a_dropped_secret_reference_is_reattached_without_rotation(
    rig, reconcilers, swarm_port, swarm_cleanup
):
    name = rig.service("reg-respec")
    reconciler = reconcilers()
    reconciler.hint(name)
    identity = rig.identity(name)
    secret_name = identity.secret["Spec"]["Name"]
    subprocess.run(
        ["docker", "service", "update", "--detach", "--secret-rm", secret_name, name],
        check=True,
        capture_output=True,
    )
    spec = rig.docker.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert not spec.get("Secrets")
    before = dict(swarm_port.writes)
    assert reconciler.hint(name) is Outcome.CHANGED
    again = rig.identity(name)
    assert again.secret["ID"] == identity.secret["ID"]
    assert again.client["secret_version"] == identity.client["secret_version"]
    assert swarm_port.writes == {**before, "update_service": before["update_service"] + 1}
    assert rig.secret_in_container(name) and rig.token_from_container(name)["sub"] == name


def test_a_rollback_past_a_rotation_gets_the_current_secret_mounted_again(
    rig, reconcilers, swarm_port, swarm_cleanup
):
    # Docker lets the registrar delete the rotated-out secret once no task runs with it
    # (it checks the current spec only); a rollback then restores the spec that mounts it.
    name = rig.service("reg-rollback")
    reconciler = reconcilers()
    reconciler.hint(name)
    first = rig.identity(name)
    rotated = reconciler.controller.rotate(swarm_port.get_service(name), 0).result(120)
    assert rotated is Outcome.CHANGED
    wait_for(
        lambda: (
            reconciler.hint(name) is not None
            and not rig.docker.api.secrets(filters={"id": first.secret["ID"]})
        ),
        120,
        1,
        "the rotated-out Docker secret was never deleted",
    )
    subprocess.run(
        ["docker", "service", "rollback", "--detach", name], check=True, capture_output=True
    )
    spec = rig.docker.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert [s["SecretID"] for s in spec["Secrets"]] == [first.secret["ID"]]  # gone, mounted
    assert reconciler.hint(name) is Outcome.CHANGED  # not a conflict
    again = rig.identity(name)
    assert again.secret["ID"] != first.secret["ID"]
    assert rig.token_from_container(name)["sub"] == name


def test_a_service_removed_while_the_registrar_was_down(rig, reconcilers, swarm_cleanup):
    name = rig.service("reg-gone")
    reconcilers().hint(name)
    service_id = rig.identity(name).client["metadata"]["service_id"]
    rig.docker.api.remove_service(name)  # no registrar runs now
    reconcilers().full_pass()
    assert rig.client(name) is None
    assert rig.secrets_of(service_id) == []


def test_a_removed_label_takes_the_identity_away(rig, reconcilers, swarm_cleanup):
    name = rig.service("reg-unlabel", env=["KEEP=me"])
    reconciler = reconcilers()
    reconciler.hint(name)
    identity = rig.identity(name)
    subprocess.run(
        ["docker", "service", "update", "--detach", "--label-rm", SELECTOR_KEY, name],
        check=True,
        capture_output=True,
    )
    assert reconciler.hint(name) is Outcome.REMOVED
    container = rig.docker.api.inspect_service(name)["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert not container.get("Secrets")
    assert container["Env"] == ["KEEP=me"]
    assert rig.client(name) is None
    assert rig.secrets_of(identity.client["metadata"]["service_id"]) == []


def test_an_update_keeps_everything_else_in_the_spec(rig, reconcilers, swarm_cleanup):
    theirs = rig.docker.secrets.create(
        name=unique_name("user-secret"), data=b"x", labels=with_test_label()
    )
    user_ref = docker.types.SecretReference(
        theirs.id, theirs.name, filename="db", uid="1000", mode=0o400
    )
    name = rig.service(
        "reg-spec",
        rig.labels(extra="kept"),
        env=["A=1", "B=two words"],
        secrets=[user_ref],
        mounts=[docker.types.Mount("/scratch", None, type="tmpfs")],
        resources=docker.types.Resources(mem_limit=64 * 1024 * 1024),
        restart_policy=docker.types.RestartPolicy(condition="on-failure", max_attempts=3),
        update_config=docker.types.UpdateConfig(parallelism=2, order="start-first"),
        constraints=["node.role==manager"],
        hostname="spec-test",
        workdir="/tmp",
        healthcheck=docker.types.Healthcheck(test=["CMD", "true"], interval=5_000_000_000),
        container_labels={"c": "d"},
    )
    before = rig.docker.api.inspect_service(name)["Spec"]
    reconcilers().hint(name)
    identity = rig.identity(name)
    after = rig.docker.api.inspect_service(name)["Spec"]
    old, new = before["TaskTemplate"]["ContainerSpec"], after["TaskTemplate"]["ContainerSpec"]
    assert new["Secrets"][0] == old["Secrets"][0]  # the user's ref, field for field
    assert [r["SecretID"] for r in new["Secrets"]] == [theirs.id, identity.secret["ID"]]
    assert new["Env"][:2] == ["A=1", "B=two words"]
    for spec in (before, after):
        del spec["TaskTemplate"]["ContainerSpec"]["Secrets"]
        del spec["TaskTemplate"]["ContainerSpec"]["Env"]
    assert after == before


def test_an_update_after_another_writer_is_retried_on_the_new_spec(rig, swarm_port, swarm_cleanup):
    name = rig.service("reg-race", env=["A=1"])
    calls: list[str | None] = []

    def edit(service: ObservedService) -> tuple[list[SecretRef], list[str]]:
        calls.append(service.labels.get("other"))
        if len(calls) == 1:  # someone else writes the spec between our read and our write
            subprocess.run(
                ["docker", "service", "update", "--detach", "--label-add", "other=writer", name],
                check=True,
                capture_output=True,
            )
        return list(service.secret_refs), [*service.env, "OURS=1"]

    assert swarm_port.update_service(name, edit) is True
    assert calls == [None, "writer"]  # the second edit saw the other writer's spec
    spec = rig.docker.api.inspect_service(name)["Spec"]
    assert spec["Labels"]["other"] == "writer"
    assert spec["TaskTemplate"]["ContainerSpec"]["Env"] == ["A=1", "OURS=1"]


def test_a_reference_that_prefixes_several_service_ids_names_no_service(
    docker_client, base_image, swarm_port, swarm_cleanup
):
    # The engine reads a reference as an id prefix too, and answers 400 "ambiguous" for
    # the prefix of several: a swarm-listener short name of one character met that.
    ids: dict[str, str] = {}
    for _ in range(40):  # 36 first characters: two share one long before that
        made = create_service(
            docker_client, unique_name("reg-prefix"), mode=docker.types.ServiceMode("replicated", 0)
        )
        if made.id[0] in ids:
            break
        ids[made.id[0]] = made.id
    else:
        pytest.fail("no two service ids began alike")
    assert swarm_port.get_service(made.id[0]) is None
    assert swarm_port.get_service(made.id) is not None  # the whole id still names it


def test_a_reference_that_is_no_service_name_never_reaches_the_engine(rig, reconcilers, swarm_port):
    # The Docker SDK puts it into the URL path unescaped: "../../info" would read /info.
    for ref in ("../../info", "../../../../version", "x/../../info"):
        assert swarm_port.get_service(ref) is None
        assert reconcilers().hint(ref) is Outcome.IGNORED
    assert not swarm_port.writes
