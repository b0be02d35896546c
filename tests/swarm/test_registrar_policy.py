"""The registration policy on the real swarm, with ``swarm-oauth registrar`` as a process:
labels ask, the policy allows, and a removed service's client id cannot be squatted.

Every test runs its own registrar with no event stream and no periodic pass, and drives it
with forced passes (``POST /v1/reconcile``), so each step is one pass of the real thing.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.rig import Rig, open_rig
from tests.support.swarm import create_service, unique_name, wait_for

pytestmark = pytest.mark.docker

PASSES_ONLY = ("--no-events", "--resync-seconds", "86400")


@pytest.fixture(scope="module")
def rig(docker_client: Any, base_image: str, run_id: str, tmp_path_factory: Any) -> Iterator[Rig]:
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("policy")) as opened:
        yield opened


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def in_stack(rig: Rig, stack: str, short: str, **labels: str) -> str:
    """A service as `docker stack deploy` would make it: ``<stack>_<short>`` with the
    stack's namespace label; its name."""
    name = f"{stack}_{short}"
    create_service(rig.docker, name, rig.labels(**{"com.docker.stack.namespace": stack, **labels}))
    return name


def test_labels_ask_and_the_policy_allows(rig, start_registrar, swarm_cleanup, tmp_path):
    prefix = unique_name("pol")
    policy = write(
        tmp_path / "policy.yml",
        f'rules:\n  - match: {{service: "{prefix}-*"}}\n    scopes: [read]\n'
        "    audiences: [inventory]\n",
    )
    registrar = start_registrar(*PASSES_ONLY, "--policy", str(policy))
    admin = rig.server.admin_token
    good = rig.service(
        f"{prefix}-good",
        rig.labels(**{"swarm-oauth.scopes": "read", "swarm-oauth.audience": "inventory"}),
    )
    greedy = rig.service(f"{prefix}-greedy", rig.labels(**{"swarm-oauth.scopes": "read write"}))
    registrar.full_pass(admin)
    rig.identity(good)
    claims = rig.token_from_container(good)
    assert (claims["scope"], claims["aud"]) == ("read", "inventory")
    status = registrar.services(admin)[greedy]
    assert status["state"] == "refused" and status["client_id"] is None
    assert "swarm-oauth.scopes asks for write" in status["reason"]
    assert f"rule 1 of {policy} (line 2)" in status["reason"]
    greedy_id = rig.docker.api.inspect_service(greedy)["ID"]
    assert rig.client(greedy) is None and rig.secrets_of(greedy_id) == []

    # The operator allows it and sends SIGHUP: the policy is read again and a pass
    # registers the service, as a whole.
    write(policy, policy.read_text().replace("scopes: [read]", "scopes: [read, write]"))
    registrar.proc.send_signal(signal.SIGHUP)
    rig.identity(greedy, timeout=60)
    assert registrar.services(admin)[greedy]["state"] == "registered"
    secret = rig.secret_in_container(greedy)
    assert rig.server.token(greedy, secret, scope="write").status_code == 200

    # The operator tightens it again: the live client loses the grant in place.
    version = rig.client(greedy)["secret_version"]
    write(policy, policy.read_text().replace("scopes: [read, write]", "scopes: [read]"))
    registrar.full_pass(admin)
    client = rig.client(greedy)
    assert client["scopes"] == ["read"] and client["secret_version"] == version
    refused = rig.server.token(greedy, secret, scope="write")
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_scope"
    assert rig.server.token(greedy, secret, scope="read").status_code == 200
    assert registrar.services(admin)[greedy]["state"] == "refused"


@pytest.mark.parametrize("with_policy", [False, True], ids=["no-policy", "policy"])
def test_a_client_id_of_another_stack_is_refused(
    rig, start_registrar, swarm_cleanup, tmp_path, with_policy
):
    stack = f"s{unique_name('x').replace('-', '')[-10:]}"
    args = list(PASSES_ONLY)
    if with_policy:
        policy = f'rules:\n  - match: {{stack: {stack}}}\n    client_id: ["{stack}_*"]\n'
        args += ["--policy", str(write(tmp_path / "policy.yml", policy))]
    registrar = start_registrar(*args)
    admin = rig.server.admin_token
    own = in_stack(rig, stack, "api", **{"swarm-oauth.client-id": f"{stack}_api-v2"})
    thief = in_stack(rig, f"{stack}x", "worker", **{"swarm-oauth.client-id": f"{stack}_api-v2"})
    registrar.full_pass(admin)
    rig.identity(own, f"{stack}_api-v2")
    status = registrar.services(admin)[thief]
    assert status["state"] == "refused" and "is not allowed by" in status["reason"]
    assert rig.client(f"{stack}_api-v2")["metadata"]["service_name"] == own
    # Without a policy the registrar says at start what it allows, and how to allow more.
    assert ("no registration policy" in registrar.log()) is not with_policy


def test_a_removed_services_client_id_cannot_be_squatted(
    rig, start_registrar, swarm_cleanup, tmp_path
):
    stack = f"s{unique_name('x').replace('-', '')[-10:]}"
    shared = f"{stack}-orders"
    policy = write(
        tmp_path / "policy.yml",
        f'rules:\n  - match: {{stack: "{stack}*"}}\n    client_id: ["{shared}"]\n',
    )
    registrar = start_registrar(*PASSES_ONLY, "--policy", str(policy))
    admin = rig.server.admin_token
    owner = in_stack(rig, stack, "orders", **{"swarm-oauth.client-id": shared})
    registrar.full_pass(admin)
    owner_id = rig.identity(owner, shared).client["metadata"]["service_id"]

    # The owner's stack is redeployed: in the gap, another stack claims its id.
    rig.docker.api.remove_service(owner)
    registrar.full_pass(admin)
    assert rig.client(shared) is None and rig.secrets_of(owner_id) == []
    squatter = in_stack(rig, f"{stack}b", "orders", **{"swarm-oauth.client-id": shared})
    registrar.full_pass(admin)
    status = registrar.services(admin)[squatter]
    assert status["state"] == "refused"
    assert f"reserved for service {owner}" in status["reason"]
    assert rig.client(shared) is None

    # The owner comes back under its name and gets its id again.
    back = in_stack(rig, stack, "orders", **{"swarm-oauth.client-id": shared})
    assert back == owner
    registrar.full_pass(admin)
    assert rig.identity(owner, shared).client["metadata"]["service_name"] == owner
    registrar.full_pass(admin)
    assert registrar.services(admin)[squatter]["state"] == "conflict"  # the live owner's now


def test_a_reserved_id_is_free_after_the_reservation_or_a_release(
    rig, start_registrar, swarm_cleanup, tmp_path
):
    stack = f"s{unique_name('x').replace('-', '')[-10:]}"
    policy = write(
        tmp_path / "policy.yml",
        f'rules:\n  - match: {{stack: "{stack}*"}}\n    client_id: ["{stack}-*"]\n',
    )
    # Long enough to outlast the steps up to the pass that must still refuse newcomers[1]
    # (a CLI subprocess, service creates) on a slow machine.
    registrar = start_registrar(
        *PASSES_ONLY, "--policy", str(policy), "--id-reservation-seconds", "20"
    )
    admin = rig.server.admin_token
    ids = [f"{stack}-a", f"{stack}-b"]
    owners = [
        in_stack(rig, stack, f"o{i}", **{"swarm-oauth.client-id": cid}) for i, cid in enumerate(ids)
    ]
    registrar.full_pass(admin)
    for owner, cid in zip(owners, ids, strict=True):
        rig.identity(owner, cid)
        rig.docker.api.remove_service(owner)
    registrar.full_pass(admin)
    reservations = registrar.api("GET", "/v1/reservations", admin).json()["reservations"]
    assert {r["client_id"] for r in reservations} >= set(ids)

    # One is released by the operator, with the command line.
    released = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "release", ids[0],
         "--url", registrar.url, "--admin-token-file", str(rig.server.data_dir / "admin-token")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert released.returncode == 0, released.stderr
    newcomers = [
        in_stack(rig, f"{stack}n", f"n{i}", **{"swarm-oauth.client-id": cid})
        for i, cid in enumerate(ids)
    ]
    registrar.full_pass(admin)
    rig.identity(newcomers[0], ids[0])
    assert registrar.services(admin)[newcomers[1]]["state"] == "refused"
    # The other frees itself once its reservation ends.
    wait_for(
        lambda: (
            registrar.full_pass(admin)
            and registrar.services(admin)[newcomers[1]]["state"] == "registered"
        ),
        60,
        1.0,
        "the reservation did not end",
    )
    rig.identity(newcomers[1], ids[1])


def test_a_malformed_policy_stops_the_registrar_and_changes_nothing(
    rig, docker_client, swarm_cleanup, tmp_path
):
    name = rig.service("pol-bad", rig.labels(**{"swarm-oauth.scopes": "read"}))
    before = docker_client.api.inspect_service(name)
    bad = write(tmp_path / "policy.yml", "rules:\n  - match: {stack: shop}\n    scope: [read]\n")
    check = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "check-policy", str(bad)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert check.returncode == 2
    assert f"{bad}:3: rules[0]: unknown key 'scope'" in check.stderr
    run = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "--policy", str(bad),
         "--clients-url", rig.clients_url, "--token-url", rig.token_url,
         "--admin-token-file", str(rig.server.data_dir / "admin-token"),
         "--selector", rig.selector, "--port", "0"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and f"{bad}:3:" in run.stderr
    after = docker_client.api.inspect_service(name)
    assert after["Version"] == before["Version"]
    assert rig.client(name) is None and rig.secrets_of(before["ID"]) == []
    good = write(tmp_path / "good.yml", "default: {scopes: [read]}\n")
    ok = subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "registrar", "check-policy", str(good)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert ok.returncode == 0 and "usable" in ok.stdout


def test_a_reload_says_what_came_of_it(docker_client, run_id, tmp_path, caplog):
    # SIGHUP's work, on the real engine: the operator must be able to tell a policy
    # applied from one left unchanged or still unusable, and a pass that failed.
    from swarm_oauth.registrar.backends import BackendSettings
    from swarm_oauth.registrar.runner import Registrar, RegistrarSettings

    policy = write(tmp_path / "policy.yml", "default: {scopes: [read]}\n")
    nowhere = BackendSettings(clients_url="http://127.0.0.1:9", admin_token="x")
    registrar = Registrar(
        RegistrarSettings(
            backend=nowhere,
            token_url="http://oauth-tokens:8080/api/token",
            admin_token="x",
            selector=f"swarm-oauth.client={run_id}-reload",
            policy_file=policy,
        )
    )
    registrar.controller.start()
    try:
        with caplog.at_level("INFO", logger="swarm_oauth.registrar"):
            registrar.reload()
            assert "the policy file is unchanged; its policy stays in force" in caplog.text
            # The clients API is nowhere: the pass cannot list the clients.
            assert "the full pass after the reload failed: " in caplog.text
            caplog.clear()
            write(policy, "default: {scope: [read]}\n")  # a typo
            registrar.controller.full_pass().exception(30)  # a pass sees it first
            caplog.clear()
            registrar.reload()
            assert "the policy file is still unusable; the previous policy stays" in caplog.text
            assert "unknown key 'scope'" in caplog.text
    finally:
        registrar.controller.close()
        registrar.registry.close()
