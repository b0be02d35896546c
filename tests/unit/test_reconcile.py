"""The reconcile logic, driven through the real work queue, on in-memory stand-ins for
Docker and the clients API (tests/support/fakes.py).

The same behaviour is shown on a real swarm in tests/swarm/test_registrar*.py; here every
branch (each crash point, each conflict) is cheap to reach.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import replace
from typing import Any

import pytest

from swarm_oauth.registrar.model import Key, SecretRef, is_service_ref
from swarm_oauth.registrar.policy import SAFE_DEFAULT, SERVICE_CLIENT_ID_LABEL
from swarm_oauth.registrar.policy_file import parse_policy
from swarm_oauth.registrar.ports import Rejected, TransientError
from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.spec import MANAGED, SERVICE_ID_LABEL
from swarm_oauth.registrar.status import State
from tests.support.fakes import (
    SELECTED,
    FakeRegistry,
    FakeSwarm,
    assert_converged,
    no_orphans,
)
from tests.support.registrar import InProcessRegistrar, crash_at


@pytest.fixture
def swarm() -> FakeSwarm:
    return FakeSwarm()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


def make(swarm: FakeSwarm, registry: FakeRegistry, **kwargs: Any) -> InProcessRegistrar:
    return InProcessRegistrar(swarm, registry, **kwargs)


@pytest.fixture
def reconciler(swarm: FakeSwarm, registry: FakeRegistry) -> Any:
    rec = make(swarm, registry)
    yield rec
    rec.close()


def test_a_selected_service_gets_client_secret_and_env(swarm, registry, reconciler):
    swarm.add_service("orders", {**SELECTED, "swarm-oauth.scopes": "read write"}, env=("A=1",))
    assert reconciler.hint("orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")
    assert client.scopes == ("read", "write")
    assert swarm.named("orders").env[0] == "A=1"


def test_a_second_pass_and_duplicate_hints_change_nothing(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.hint("orders")
    before = (Counter(swarm.writes), Counter(registry.writes), swarm.named("orders"))
    assert reconciler.hint("orders") is Outcome.UNCHANGED
    assert reconciler.hint(swarm.named("orders").id) is Outcome.UNCHANGED
    assert reconciler.full_pass() == Counter({Outcome.UNCHANGED: 1})
    assert (swarm.writes, registry.writes, swarm.named("orders")) == before


def test_unselected_services_are_never_touched(swarm, registry, reconciler):
    plain = swarm.add_service("plain", {"swarm-oauth.client": "false"}, env=("X=1",))
    assert reconciler.hint("plain") is Outcome.IGNORED
    reconciler.full_pass()
    assert swarm.named("plain") == plain
    assert not registry.clients and not swarm.secrets and not swarm.writes


@pytest.mark.parametrize(
    "step", ["add_client", "create_secret", "update_service", "delete_secret", "rotate_client"]
)
def test_a_crash_after_any_step_is_repaired_by_the_next_pass(swarm, registry, step):
    swarm.add_service("orders", {**SELECTED, "swarm-oauth.scopes": "read"})
    if step in ("delete_secret", "rotate_client"):
        # These steps only happen on a later generation: lose the current Docker secret.
        first = make(swarm, registry)
        first.hint("orders")
        first.close()
        _, secret = assert_converged(swarm, registry, "orders")
        if step == "rotate_client":
            service = swarm.named("orders")
            swarm.set_service(replace(service, secret_refs=()))
            swarm.delete_secret(secret.id)
        else:
            registry.rotate("orders")  # current generation now missing: rotate, then delete
    crashing = make(swarm, registry, after_step=crash_at(step))
    assert crashing.hint("orders") is Outcome.FAILED
    crashing.close()
    restarted = make(swarm, registry)
    restarted.full_pass()
    assert_converged(swarm, registry, "orders")
    no_orphans(swarm, registry)
    writes = (Counter(swarm.writes), Counter(registry.writes))
    assert restarted.full_pass() == Counter({Outcome.UNCHANGED: 1})
    assert (swarm.writes, registry.writes) == writes
    restarted.close()


def test_a_crash_after_adding_the_client_rotates_instead_of_adding_again(swarm, registry):
    swarm.add_service("orders")
    crashing = make(swarm, registry, after_step=crash_at("add_client"))
    crashing.hint("orders")
    assert registry.clients["orders"].secret_version == 1 and not swarm.secrets
    make(swarm, registry).hint("orders")
    client, _ = assert_converged(swarm, registry, "orders")
    assert client.secret_version == 2
    assert registry.writes == Counter({"add": 1, "rotate": 1})


def test_a_dropped_secret_reference_is_reattached_without_rotation(swarm, registry, reconciler):
    swarm.add_service("orders", env=("KEEP=me",))
    reconciler.hint("orders")
    client, secret = assert_converged(swarm, registry, "orders")
    service = swarm.named("orders")
    # What `docker stack deploy` with the original spec does: refs and env are replaced.
    swarm.set_service(replace(service, secret_refs=(), env=("KEEP=me",)))
    assert reconciler.hint("orders") is Outcome.CHANGED
    again, same = assert_converged(swarm, registry, "orders")
    assert (again.secret_version, same.id) == (client.secret_version, secret.id)
    assert registry.writes == Counter({"add": 1})
    assert swarm.named("orders").env[0] == "KEEP=me"


def test_removing_the_service_removes_client_and_secrets(swarm, registry, reconciler):
    service = swarm.add_service("orders")
    reconciler.hint("orders")
    del swarm.services[service.id]
    assert reconciler.hint("orders") is Outcome.REMOVED
    assert not registry.clients and not swarm.secrets
    assert reconciler.hint("orders") is Outcome.IGNORED


def test_a_remove_event_by_service_id_retires_it(swarm, registry, reconciler):
    service = swarm.add_service("orders")
    reconciler.hint(service.id)
    del swarm.services[service.id]
    assert reconciler.hint(service.id) is Outcome.REMOVED
    assert not registry.clients and not swarm.secrets


def test_removal_while_the_registrar_was_down_is_found_by_the_full_pass(swarm, registry):
    first = make(swarm, registry)
    for name in ("a", "b"):
        swarm.add_service(name)
    first.full_pass()
    first.close()
    del swarm.services[swarm.named("a").id]
    restarted = make(swarm, registry)
    assert restarted.full_pass() == Counter({Outcome.UNCHANGED: 1, Outcome.REMOVED: 1})
    assert set(registry.clients) == {"b"}
    assert_converged(swarm, registry, "b")
    no_orphans(swarm, registry)
    restarted.close()


def test_removing_the_label_detaches_and_removes_everything(swarm, registry, reconciler):
    service = swarm.add_service("orders", env=("KEEP=me",))
    reconciler.hint("orders")
    service = swarm.named("orders")
    swarm.set_service(replace(service, labels={}))
    assert reconciler.full_pass()[Outcome.REMOVED] == 1
    after = swarm.named("orders")
    assert after.secret_refs == () and after.env == ("KEEP=me",)
    assert not registry.clients and not swarm.secrets


@pytest.mark.parametrize("step", ["update_service", "delete_secret", "remove_client"])
def test_a_crash_while_retiring_is_finished_by_the_next_pass(swarm, registry, step):
    first = make(swarm, registry)
    swarm.add_service("orders")
    first.hint("orders")
    first.close()
    service = swarm.named("orders")
    swarm.set_service(replace(service, labels={}))  # unselected: detach, delete, remove
    crashing = make(swarm, registry, after_step=crash_at(step))
    assert crashing.full_pass()[Outcome.FAILED] == 1
    crashing.close()
    restarted = make(swarm, registry)
    restarted.full_pass()
    assert not registry.clients and not swarm.secrets
    assert swarm.named("orders").secret_refs == ()
    restarted.close()


def test_registrar_secrets_on_a_service_it_never_managed_are_not_its_business(
    swarm, registry, reconciler
):
    # Another registrar (another selector, another clients API) manages this service.
    service = swarm.add_service("theirs", {"other.selector": "true"})
    secret = swarm.create_secret("s", b"x", {**MANAGED, SERVICE_ID_LABEL: service.id})
    ref = SecretRef(secret.id, secret.name, "oauth_client_secret")
    swarm.set_service(replace(service, secret_refs=(ref,), env=("OAUTH_CLIENT_ID=theirs",)))
    before = swarm.named("theirs")
    writes = Counter(swarm.writes)
    assert reconciler.hint("theirs") is Outcome.IGNORED
    reconciler.full_pass()
    assert swarm.named("theirs") == before and swarm.writes == writes


def test_a_service_recreated_under_the_same_name_gets_a_fresh_client(swarm, registry, reconciler):
    old = swarm.add_service("orders")
    reconciler.hint("orders")
    old_secret = registry.secret_of["orders"]
    del swarm.services[old.id]
    new = swarm.add_service("orders")
    assert reconciler.hint("orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")
    assert client.service_id == new.id
    assert registry.secret_of["orders"] != old_secret
    no_orphans(swarm, registry)


def test_a_client_the_registrar_did_not_create_is_left_alone(swarm, registry, reconciler):
    registry.add("orders", ["admin"], [], {"owner": "alice"})
    service = swarm.add_service("orders")
    assert reconciler.hint("orders") is Outcome.CONFLICT
    reconciler.full_pass()
    assert registry.clients["orders"].metadata == {"owner": "alice"}
    assert registry.writes == Counter({"add": 1})
    assert swarm.named("orders") == service and not swarm.secrets


def test_two_live_services_claiming_one_client_id(swarm, registry, reconciler):
    swarm.add_service("a", {**SELECTED, "swarm-oauth.client-id": "shared"})
    reconciler.hint("a")
    b = swarm.add_service("b", {**SELECTED, "swarm-oauth.client-id": "shared"})
    assert reconciler.hint("b") is Outcome.CONFLICT
    assert swarm.named("b") == b
    assert registry.clients["shared"].service_id == swarm.named("a").id
    assert_converged(swarm, registry, "a")


def test_a_foreign_secret_at_the_target_is_a_conflict(swarm, registry, reconciler):
    theirs = swarm.create_secret("theirs", b"x", {})
    ref = SecretRef(theirs.id, theirs.name, "oauth_client_secret")
    service = swarm.add_service("orders", secret_refs=(ref,))
    assert reconciler.hint("orders") is Outcome.CONFLICT
    assert swarm.named("orders") == service and not registry.clients


def test_changed_scopes_update_the_client_in_place(swarm, registry, reconciler):
    swarm.add_service("orders", {**SELECTED, "swarm-oauth.scopes": "read"})
    reconciler.hint("orders")
    secret_before = registry.secret_of["orders"]
    service = swarm.named("orders")
    labels = {**service.labels, "swarm-oauth.scopes": "read write", "swarm-oauth.audience": "api"}
    swarm.set_service(replace(service, labels=labels))
    assert reconciler.hint("orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")
    assert (client.scopes, client.audiences) == (("read", "write"), ("api",))
    # Same secret, no new Docker secret, no restart of the service's tasks.
    assert registry.secret_of["orders"] == secret_before
    assert registry.writes["update"] == 1
    assert registry.writes["rotate"] == 0 and registry.writes["remove"] == 0
    assert reconciler.hint("orders") is Outcome.UNCHANGED


def test_a_changed_client_id_label_moves_the_service_to_a_new_client(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.hint("orders")
    service = swarm.named("orders")
    swarm.set_service(
        replace(service, labels={**service.labels, SERVICE_CLIENT_ID_LABEL: "orders-v2"})
    )
    reconciler.full_pass()
    assert set(registry.clients) == {"orders-v2"}
    assert_converged(swarm, registry, "orders")


def test_a_changed_target_moves_the_mount(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.hint("orders")
    service = swarm.named("orders")
    swarm.set_service(
        replace(service, labels={**service.labels, "swarm-oauth.secret-target": "id"})
    )
    reconciler.hint("orders")
    assert_converged(swarm, registry, "orders", target="id")
    assert len(swarm.named("orders").secret_refs) == 1


def test_invalid_labels_touch_nothing_and_keep_an_existing_identity(swarm, registry, reconciler):
    bad = swarm.add_service("bad", {**SELECTED, SERVICE_CLIENT_ID_LABEL: "no spaces allowed"})
    assert reconciler.hint("bad") is Outcome.INVALID
    assert swarm.named("bad") == bad and not registry.clients
    swarm.add_service("orders")
    reconciler.hint("orders")
    service = swarm.named("orders")
    swarm.set_service(replace(service, labels={**service.labels, "swarm-oauth.scopes": 'a"b'}))
    assert reconciler.full_pass()[Outcome.INVALID] == 2
    assert "orders" in registry.clients and len(swarm.secrets) == 1


def test_a_stack_service_is_found_by_its_short_name(swarm, registry, reconciler):
    stack = {**SELECTED, "com.docker.stack.namespace": "shop"}
    service = swarm.add_service("shop_orders", stack)
    assert reconciler.hint("orders") is Outcome.CHANGED
    assert_converged(swarm, registry, "shop_orders")
    del swarm.services[service.id]
    assert reconciler.hint("orders") is Outcome.REMOVED
    assert not registry.clients and not swarm.secrets


def test_hints_are_checked_against_docker(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.hint("orders")
    writes = (Counter(swarm.writes), Counter(registry.writes))
    # a forged create for an unknown service, and a forged remove for a live one
    assert reconciler.hint("ghost") is Outcome.IGNORED
    assert reconciler.hint("orders") is Outcome.UNCHANGED
    assert (swarm.writes, registry.writes) == writes
    assert_converged(swarm, registry, "orders")


@pytest.mark.parametrize("part", ["swarm", "registry"])
def test_transient_failures_ask_for_a_retry(swarm, registry, reconciler, part):
    key = Key.service(swarm.add_service("orders").id)
    (swarm if part == "swarm" else registry).fail = TransientError
    assert reconciler.reconcile(key) is Outcome.RETRY
    swarm.fail = registry.fail = None
    assert reconciler.reconcile(key) is Outcome.CHANGED


def test_a_hint_that_cannot_be_resolved_now_raises_a_transient_error(swarm, reconciler):
    swarm.add_service("orders")
    swarm.fail = TransientError
    with pytest.raises(TransientError):
        reconciler.hint("orders")


def test_an_unexpected_error_reading_the_service_is_a_failure_not_a_crash(swarm, reconciler):
    key = Key.service(swarm.add_service("orders").id)
    swarm.fail = KeyError
    assert reconciler.reconcile(key) is Outcome.FAILED


@pytest.mark.parametrize("ref", ["../../info", "a/b", ".x", "-x", "", "x" * 64, "a b", "a?b"])
def test_a_reference_no_docker_service_can_have_is_ignored_unread(swarm, registry, reconciler, ref):
    swarm.fail = registry.fail = AssertionError  # neither may even be read
    assert reconciler.hint(ref) is Outcome.IGNORED


@pytest.mark.parametrize("ref", ["orders", "shop_orders", "a.b-c", "x" * 63, "z" * 25])
def test_docker_names_and_ids_are_service_references(ref):
    assert is_service_ref(ref)


def test_full_pass_raises_when_docker_cannot_be_listed(swarm, registry, reconciler):
    swarm.fail = TransientError
    with pytest.raises(TransientError):
        reconciler.full_pass()


def test_concurrent_hints_for_one_service_register_it_once(swarm, registry, reconciler):
    swarm.add_service("orders")
    registry.delay = 0.05  # widen the window in which unserialized work would race
    outcomes: list[Outcome] = []

    def hint() -> None:
        outcomes.append(reconciler.hint("orders"))

    threads = [threading.Thread(target=hint) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Folded by the queue: one run registers it, at most one more finds it done.
    runs = reconciler.runs()
    assert runs[Outcome.CHANGED] == 1 and sum(runs.values()) <= 2, runs
    assert set(outcomes) <= {Outcome.CHANGED, Outcome.UNCHANGED} and len(outcomes) == 8
    assert registry.writes == Counter({"add": 1})
    assert swarm.writes == Counter({"create_secret": 1, "update_service": 1})
    assert_converged(swarm, registry, "orders")


def test_many_services_converge_in_one_pass(swarm, registry, reconciler):
    for index in range(20):
        swarm.add_service(f"svc{index}")
    assert reconciler.full_pass() == Counter({Outcome.CHANGED: 20})
    for index in range(20):
        assert_converged(swarm, registry, f"svc{index}")
    writes = Counter(swarm.writes)
    assert reconciler.full_pass() == Counter({Outcome.UNCHANGED: 20})
    assert swarm.writes == writes


# -- the registration policy and client-id reservations ---------------------------------

SHOP_POLICY = """
rules:
  - match: {stack: shop}
    client_id: ["shop_*", orders]
    scopes: [read, "orders:*"]
    audiences: [inventory]
"""


def shop_service(swarm: FakeSwarm, name: str = "shop_orders", **labels: str) -> Any:
    return swarm.add_service(
        name, {**SELECTED, "com.docker.stack.namespace": name.split("_")[0], **labels}
    )


def test_labels_within_the_policy_are_granted(swarm, registry):
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY))
    shop_service(swarm, **{"swarm-oauth.scopes": "read orders:write"})
    assert rec.hint("shop_orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "shop_orders")
    assert client.scopes == ("read", "orders:write")
    assert rec.board.states() == Counter({State.REGISTERED: 1})
    rec.close()


def test_one_scope_too_many_refuses_a_new_service_as_a_whole(swarm, registry):
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY, "policy.yml"))
    service = shop_service(swarm, **{"swarm-oauth.scopes": "read admin"})
    assert rec.hint("shop_orders") is Outcome.REFUSED
    assert not registry.clients and not swarm.secrets and swarm.named("shop_orders") == service
    status = rec.board.get(service.id)
    assert status is not None and status.state is State.REFUSED
    assert "admin" in status.reason and "rule 1 of policy.yml" in status.reason
    assert (
        rec.metrics.registry.get_sample_value(
            "swarm_oauth_registrar_refusals_total", {"reason": "scope_not_allowed"}
        )
        == 1
    )
    # The operator allows it: the next pass registers it.
    rec.identities.policy = parse_policy(SHOP_POLICY.replace("[read,", "[read, admin,"))
    assert rec.full_pass() == Counter({Outcome.CHANGED: 1})
    assert_converged(swarm, registry, "shop_orders")
    rec.close()


def test_a_refused_service_removed_unseen_leaves_the_board_at_the_next_pass(swarm, registry):
    # Removed with no event reaching the registrar (swarm-listener with --no-events, an
    # event-stream gap): nothing of the registrar's was on it, so no key of its own runs.
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY, "policy.yml"))
    service = shop_service(swarm, **{"swarm-oauth.scopes": "read admin"})
    assert rec.full_pass() == Counter({Outcome.REFUSED: 1})
    refused = lambda: rec.metrics.registry.get_sample_value(  # noqa: E731
        "swarm_oauth_registrar_services", {"state": "refused"}
    )
    assert refused() == 1
    del swarm.services[service.id]
    rec.full_pass()
    assert rec.board.get(service.id) is None
    assert refused() == 0
    rec.close()


def test_a_tightened_policy_takes_grants_away_in_place(swarm, registry):
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY))
    shop_service(swarm, **{"swarm-oauth.scopes": "read orders:write"})
    rec.hint("shop_orders")
    secret_before = registry.secret_of["shop_orders"]
    writes = Counter(swarm.writes)
    rec.identities.policy = parse_policy(SHOP_POLICY.replace('"orders:*"', '"orders:read"'))
    assert rec.full_pass() == Counter({Outcome.REFUSED: 1})
    client = registry.clients["shop_orders"]
    assert client.scopes == ("read",) and client.audiences == ()
    # In place: the same secret, nothing new in Docker, the service keeps its mount.
    assert registry.secret_of["shop_orders"] == secret_before
    assert swarm.writes == writes
    assert rec.full_pass() == Counter({Outcome.REFUSED: 1})  # and nothing more to take
    assert registry.writes["update"] == 1
    rec.close()


def test_a_cross_stack_client_id_is_refused_with_and_without_a_policy(swarm, registry):
    for policy in (SAFE_DEFAULT, parse_policy(SHOP_POLICY)):
        rec = make(swarm, registry, policy=policy)
        evil = shop_service(
            swarm, f"evil_{len(swarm.services)}", **{"swarm-oauth.client-id": "shop_orders"}
        )
        assert rec.reconcile(Key.service(evil.id)) is Outcome.REFUSED
        assert "shop_orders" not in registry.clients
        rec.close()


def test_a_removed_services_client_id_is_reserved_for_its_name(swarm, registry):
    clock = [1000.0]
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY), clock=lambda: clock[0])
    owner = shop_service(swarm, **{"swarm-oauth.client-id": "orders"})
    rec.hint("shop_orders")
    del swarm.services[owner.id]  # the redeploy's gap
    rec.full_pass()
    assert "orders" not in registry.clients
    (reservation,) = rec.reconciler.reservations()
    assert (reservation.client_id, reservation.service_name) == ("orders", "shop_orders")
    assert reservation.until == 1600.0
    squatter = shop_service(swarm, "shop_squat", **{"swarm-oauth.client-id": "orders"})
    assert rec.reconcile(Key.service(squatter.id)) is Outcome.REFUSED
    assert "reserved for service shop_orders" in rec.board.get(squatter.id).reason
    assert "orders" not in registry.clients
    # The owner comes back under its name: it gets the id, and the reservation goes.
    back = shop_service(swarm, **{"swarm-oauth.client-id": "orders"})
    assert rec.reconcile(Key.service(back.id)) is Outcome.CHANGED
    assert registry.clients["orders"].service_id == back.id
    assert rec.reconciler.reservations() == []
    rec.close()


def test_a_client_id_is_kept_for_its_owners_name_even_before_the_removal_is_reconciled(
    swarm, registry
):
    # The squatter's run comes first (an event missed, the registrar down during the
    # gap, a full pass's keys in another order): it must not take the id either.
    clock = [1000.0]
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY), clock=lambda: clock[0])
    owner = shop_service(swarm, **{"swarm-oauth.client-id": "orders"})
    rec.hint("shop_orders")
    del swarm.services[owner.id]
    squatter = shop_service(swarm, "shop_squat", **{"swarm-oauth.client-id": "orders"})
    assert rec.reconcile(Key.service(squatter.id)) is Outcome.REFUSED
    assert "reserved for service shop_orders" in rec.board.get(squatter.id).reason
    # The owner's removal was finished on the way: its secrets and client gone, its id
    # reserved for its name.
    assert "orders" not in registry.clients
    assert not swarm.list_secrets({SERVICE_ID_LABEL: owner.id})
    (reservation,) = rec.reconciler.reservations()
    assert (reservation.client_id, reservation.service_name) == ("orders", "shop_orders")
    rec.full_pass()  # nothing left of the removal, and the squatter still refused
    assert len(rec.reconciler.reservations()) == 1
    assert rec.board.get(squatter.id).state is State.REFUSED
    back = shop_service(swarm, **{"swarm-oauth.client-id": "orders"})
    assert rec.reconcile(Key.service(back.id)) is Outcome.CHANGED
    assert registry.clients["orders"].service_id == back.id
    rec.close()


def test_a_reservation_ends_or_is_released(swarm, registry):
    clock = [1000.0]
    rec = make(swarm, registry, policy=parse_policy(SHOP_POLICY), clock=lambda: clock[0])
    for name in ("shop_a", "shop_b"):
        service = shop_service(swarm, name)
        rec.hint(name)
        del swarm.services[service.id]
    rec.full_pass()
    assert {r.client_id for r in rec.reconciler.reservations()} == {"shop_a", "shop_b"}
    assert rec.reconciler.release("shop_a") is True
    assert rec.reconciler.release("shop_a") is False
    clock[0] += 601
    rec.full_pass()  # prunes what has ended
    assert rec.reconciler.reservations() == [] and not swarm.configs
    rec.close()


def test_a_crash_after_reserving_is_finished_by_the_next_pass(swarm, registry):
    first = make(swarm, registry)
    service = swarm.add_service("orders")
    first.hint("orders")
    first.close()
    del swarm.services[service.id]
    crashing = make(swarm, registry, after_step=crash_at("create_reservation"))
    crashing.full_pass()
    crashing.close()
    assert "orders" in registry.clients and len(swarm.configs) == 1
    restarted = make(swarm, registry)
    restarted.full_pass()
    assert not registry.clients and not swarm.secrets
    assert len(swarm.configs) == 1  # reserved once, not twice
    restarted.close()


def test_the_removal_of_a_service_never_takes_the_client_of_one_recreated_under_its_name(
    swarm, registry
):
    # docker service rm orders && docker service create --name orders ...: the old id's
    # key and the new one's run on two workers. The new one finishes the removal itself
    # and registers its own client while the old one is still retiring.
    state: dict[str, Any] = {}

    def meanwhile(step: str) -> None:
        if step == "create_reservation" and not state.get("fired"):
            state["fired"] = True
            ticket = state["rec"].controller.queue.add([Key.service(state["new"].id)])
            state["new_outcome"] = ticket.wait(10)[Key.service(state["new"].id)]

    rec = make(swarm, registry, after_step=meanwhile)
    state["rec"] = rec
    old = swarm.add_service("orders")
    assert rec.reconcile(Key.service(old.id)) is Outcome.CHANGED
    del swarm.services[old.id]
    state["new"] = swarm.add_service("orders")
    rec.reconcile(Key.service(old.id))
    assert state["new_outcome"] is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")  # its client, and its secret works
    assert client.service_id == state["new"].id
    rec.close()


# -- rotation of client secrets ------------------------------------------------------------

DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def rotating(swarm: FakeSwarm, registry: FakeRegistry, **kwargs: Any) -> tuple[Any, Clock]:
    clock = Clock()
    swarm.clock = registry.clock = clock
    policy = parse_policy("default: {secret_max_age: 30d}\n")
    rec = make(swarm, registry, policy=policy, clock=clock, **kwargs)
    return rec, clock


def test_a_secret_older_than_its_maximum_is_rotated_and_the_old_one_goes_once_unused(
    swarm, registry, caplog
):
    rec, clock = rotating(swarm, registry, rotation_grace=3600)
    service = swarm.add_service("orders")
    rec.hint("orders")
    client, old = assert_converged(swarm, registry, "orders")
    old_secret = registry.secret_of["orders"]
    clock.now += 29 * DAY
    assert rec.full_pass() == Counter({Outcome.UNCHANGED: 1})
    clock.now += 1 * DAY
    # A task of the old spec still runs with the old secret (the update rolls out).
    swarm.old_tasks[service.id] = {old.id}
    with caplog.at_level("INFO", logger="swarm_oauth.registrar"):
        assert rec.full_pass() == Counter({Outcome.CHANGED: 1})
    assert any(
        r.getMessage().endswith("its maximum is 30d); the old secret works 1h longer")
        for r in caplog.records
    ), [r.getMessage() for r in caplog.records]
    secrets_now = swarm.list_secrets({**MANAGED, SERVICE_ID_LABEL: service.id})
    assert {s.id for s in secrets_now} > {old.id}  # the old one is kept while in use
    assert registry.clients["orders"].secret_version == client.secret_version + 1
    # Both secrets work during the grace, so no task is cut off.
    assert registry.accepts("orders", old_secret)
    assert registry.accepts("orders", registry.secret_of["orders"])
    # The rollout ends: the old secret goes at the next look (the queue looks again soon).
    swarm.old_tasks[service.id] = set()
    rec.hint("orders")
    _, new = assert_converged(swarm, registry, "orders")
    assert new.id != old.id and old.id not in swarm.secrets
    clock.now += 3601
    assert not registry.accepts("orders", old_secret)
    assert (
        rec.metrics.registry.get_sample_value(
            "swarm_oauth_registrar_secret_rotations_total", {"reason": "age"}
        )
        == 1
    )
    rec.close()


def test_a_rotated_secret_docker_would_not_store_is_stored_on_retry_not_rotated_again(
    swarm, registry, monkeypatch
):
    rec, clock = rotating(swarm, registry, rotation_grace=3600)
    service = swarm.add_service("orders")
    rec.hint("orders")
    _, old = assert_converged(swarm, registry, "orders")
    old_secret = registry.secret_of["orders"]
    swarm.old_tasks[service.id] = {old.id}  # the running tasks hold the old secret
    clock.now += 30 * DAY
    refusals = iter([TransientError("raft: no leader")] * 3)
    create_secret = swarm.create_secret

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if (refusal := next(refusals, None)) is not None:
            raise refusal
        return create_secret(*args, **kwargs)

    monkeypatch.setattr(swarm, "create_secret", flaky)
    for _ in range(4):
        rec.full_pass()
    # One rotation, however many tries the Docker secret took: a registry that keeps a
    # few rotated secrets (Hydra) would otherwise drop the one the tasks still use.
    assert registry.writes["rotate"] == 1
    swarm.old_tasks[service.id] = set()
    rec.hint("orders")
    assert_converged(swarm, registry, "orders")  # what is mounted is the client's secret
    assert registry.accepts("orders", old_secret)  # its grace
    rec.close()


def test_a_secret_docker_would_not_store_is_not_given_to_a_later_client_of_that_id(
    swarm, registry, monkeypatch
):
    rec = make(swarm, registry)
    refusing = [True]
    create_secret, add = swarm.create_secret, registry.add

    def flaky_secret(*args: Any, **kwargs: Any) -> Any:
        if refusing[0]:
            raise TransientError("raft: no leader")
        return create_secret(*args, **kwargs)

    monkeypatch.setattr(swarm, "create_secret", flaky_secret)
    first = swarm.add_service("orders")
    assert rec.hint("orders") is Outcome.RETRY  # the client made, its secret not stored
    del swarm.services[first.id]
    rec.full_pass()  # the client of the gone service is removed
    assert "orders" not in registry.clients
    refusing[0] = False
    # The same name again, and the answer to its registration lost on the way: the next
    # run finds a client of version 1 without a Docker secret, as the first one was.
    answers = iter([TransientError("connection reset")])

    def lossy_add(*args: Any, **kwargs: Any) -> Any:
        fresh = add(*args, **kwargs)
        if (lost := next(answers, None)) is not None:
            raise lost
        return fresh

    monkeypatch.setattr(registry, "add", lossy_add)
    swarm.add_service("orders")
    rec.hint("orders")
    rec.full_pass()
    # Mounted: the new client's secret, not the one made for the removed client.
    assert_converged(swarm, registry, "orders")
    rec.close()


def test_the_board_says_while_tasks_run_with_an_older_secret_and_once_it_stops(swarm, registry):
    rec, clock = rotating(swarm, registry, rotation_grace=3600)
    service = swarm.add_service("orders")
    rec.hint("orders")
    _, old = assert_converged(swarm, registry, "orders")
    assert rec.board.get(service.id).state is State.REGISTERED
    swarm.old_tasks[service.id] = {old.id}  # a rolling update that does not finish
    clock.now += 30 * DAY
    rec.full_pass()  # rotated by age, with an hour's grace
    status = rec.board.get(service.id)
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(clock.now + 3600))
    assert status.state is State.ROLLING, status
    assert f"works until {ends}" in status.reason
    clock.now += 3601
    rec.full_pass()
    status = rec.board.get(service.id)
    assert status.state is State.STRANDED, status
    assert "no longer works" in status.reason
    sample = rec.metrics.registry.get_sample_value
    assert sample("swarm_oauth_registrar_services", {"state": "stranded"}) == 1
    swarm.old_tasks[service.id] = set()  # replaced at last
    rec.full_pass()
    assert rec.board.get(service.id).state is State.REGISTERED
    assert rec.board.get(service.id).reason == ""
    rec.close()


def test_after_a_rotation_without_grace_the_tasks_not_yet_replaced_are_stranded(swarm, registry):
    rec = make(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    _, old = assert_converged(swarm, registry, "orders")
    swarm.old_tasks[service.id] = {old.id}
    rec.controller.rotate(swarm.named("orders"), 0).result(30)  # a leaked secret
    rec.drain()
    assert rec.board.get(service.id).state is State.STRANDED
    rec.close()


def test_with_the_maximum_age_off_a_secret_is_never_rotated_by_age(swarm, registry):
    # --secret-max-age 0 and a policy without secret_max_age: what InProcessRegistrar runs.
    clock = Clock()
    swarm.clock = registry.clock = clock
    rec = make(swarm, registry, clock=clock)
    assert rec.identities.secret_max_age == 0
    swarm.add_service("orders")
    rec.hint("orders")
    version = registry.clients["orders"].secret_version
    clock.now += 3650 * DAY
    assert rec.full_pass() == Counter({Outcome.UNCHANGED: 1})
    assert registry.clients["orders"].secret_version == version
    rec.close()


def test_a_secret_its_server_ends_is_replaced_with_a_third_of_its_life_left(swarm, registry):
    rec, clock = rotating(swarm, registry)
    registry.secret_lifetime = 3 * DAY
    rec.hint(swarm.add_service("orders").name)
    first = registry.secret_of["orders"]
    clock.now += 2 * DAY - 60
    assert rec.full_pass() == Counter({Outcome.UNCHANGED: 1})
    clock.now += 60
    assert rec.full_pass() == Counter({Outcome.CHANGED: 1})
    assert registry.secret_of["orders"] != first
    _, secret = assert_converged(swarm, registry, "orders")
    assert swarm.data(secret.id) == registry.secret_of["orders"].encode()
    # The new secret's life counts from its own start.
    clock.now += 2 * DAY - 60
    assert rec.full_pass() == Counter({Outcome.UNCHANGED: 1})
    rec.close()


def test_secrets_their_server_gives_no_life_are_not_replaced_at_every_pass(swarm, registry):
    # A server whose clock is behind the registrar's ends each secret before Docker made it.
    rec, clock = rotating(swarm, registry)
    registry.secret_lifetime = -60
    rec.hint(swarm.add_service("orders").name)
    first = registry.secret_of["orders"]
    for _ in range(3):
        clock.now += 3600
        assert rec.full_pass() == Counter({Outcome.UNCHANGED: 1})
    assert registry.secret_of["orders"] == first
    rec.close()


def test_a_label_may_ask_for_a_shorter_maximum_but_not_a_longer_one(swarm, registry):
    rec, clock = rotating(swarm, registry)
    swarm.add_service("short", {**SELECTED, "swarm-oauth.secret-max-age": "1d"})
    long = swarm.add_service("long", {**SELECTED, "swarm-oauth.secret-max-age": "60d"})
    rec.full_pass()
    assert "short" in registry.clients and "long" not in registry.clients
    assert "longer than the 30d of the default" in rec.board.get(long.id).reason
    version = registry.clients["short"].secret_version
    clock.now += DAY + 1
    rec.full_pass()
    assert registry.clients["short"].secret_version == version + 1
    rec.close()


def test_a_label_may_not_ask_for_a_maximum_shorter_than_the_rotation_grace(swarm, registry):
    # The previous secret works for the grace after a rotation; one within it would end
    # that grace early for the tasks the rolling update has not replaced yet.
    rec, clock = rotating(swarm, registry, rotation_grace=3600)
    brief = swarm.add_service("brief", {**SELECTED, "swarm-oauth.secret-max-age": "59m"})
    hourly = swarm.add_service("hourly", {**SELECTED, "swarm-oauth.secret-max-age": "1h"})
    rec.full_pass()
    assert "hourly" in registry.clients and "brief" not in registry.clients
    assert rec.board.get(brief.id).reason.endswith(
        "shorter than the registrar's rotation grace of 1h"
    )
    assert rec.board.get(hourly.id).state.value == "registered"
    version = registry.clients["hourly"].secret_version
    clock.now += 3600
    rec.full_pass()
    assert registry.clients["hourly"].secret_version == version + 1
    rec.close()


def test_a_rollback_past_a_rotation_is_repaired_not_called_a_conflict(swarm, registry):
    # The rotation's update fails and Docker rolls the service back to its previous spec,
    # which mounts the secret the rotation deleted once no task used it (Docker checks
    # only the current spec before deleting one).
    rec, _ = rotating(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    before = swarm.named("orders")
    assert rec.controller.rotate(service, 3600).result(10) is Outcome.CHANGED
    rec.drain()
    [old] = [r.secret_id for r in before.secret_refs]
    assert old not in swarm.secrets
    swarm.set_service(before)  # the rollback
    assert rec.hint("orders") is Outcome.CHANGED
    assert_converged(swarm, registry, "orders")
    assert rec.full_pass() == Counter({Outcome.UNCHANGED: 1})
    rec.close()


def test_a_rotation_with_a_grace_never_cuts_off_tasks_of_the_last_one(swarm, registry):
    # The registry keeps one previous secret: rotating again while tasks still run with
    # the one before would stop it at once, whatever grace it was promised.
    rec, _ = rotating(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    first = registry.secret_of["orders"]
    swarm.old_tasks[service.id] = {r.secret_id for r in swarm.named("orders").secret_refs}
    assert rec.controller.rotate(swarm.named("orders"), 3600).result(10) is Outcome.CHANGED
    version = registry.clients["orders"].secret_version
    assert rec.controller.rotate(swarm.named("orders"), 3600).result(10) is Outcome.UNCHANGED
    assert registry.clients["orders"].secret_version == version
    assert registry.accepts("orders", first)
    rec.close()


def test_a_rollout_that_takes_long_is_looked_at_less_often(swarm, registry):
    # A paused update leaves a task with the old secret for as long as nobody resumes
    # it: each look is a whole reconcile (and a request to the registry).
    rec, clock = rotating(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    swarm.old_tasks[service.id] = {r.secret_id for r in swarm.named("orders").secret_refs}
    assert rec.controller.rotate(swarm.named("orders"), 0).result(10) is Outcome.CHANGED
    waits = []
    for elapsed in (1, 60, 600, 6000):
        clock.now += elapsed
        waits.append(rec.reconciler.reconcile(Key.service(service.id)).recheck_after)
    assert waits == [3.0, 15.25, 60.0, 60.0]
    swarm.old_tasks[service.id] = set()  # replaced at last: the old secret goes
    result = rec.reconciler.reconcile(Key.service(service.id))
    assert result.recheck_after is None and result.outcome is Outcome.CHANGED
    rec.close()


def test_a_requested_rotation_with_no_grace_stops_the_old_secret_at_once(swarm, registry):
    rec, _ = rotating(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    old_secret = registry.secret_of["orders"]
    assert rec.controller.rotate(service, 0).result(10) is Outcome.CHANGED
    rec.drain()
    assert not registry.accepts("orders", old_secret)
    _, secret = assert_converged(swarm, registry, "orders")
    assert swarm.data(secret.id) == registry.secret_of["orders"].encode()
    rec.close()


def test_a_rotation_requested_while_the_service_is_being_reconciled_is_done_once_and_reported(
    swarm, registry
):
    # The run under way when the request arrives may be the one that rotates; the run the
    # request queued then has nothing left to do, and the answer must still be "rotated".
    rec, _ = rotating(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    version = registry.clients["orders"].secret_version
    entered, release = threading.Event(), threading.Event()
    find = registry.find

    def held_find(name: str, service_id: str) -> Any:
        entered.set()
        assert release.wait(10)
        return find(name, service_id)

    registry.find = held_find  # type: ignore[method-assign]
    rec.controller.enqueue([Key.service(service.id)])
    assert entered.wait(10)
    answer = rec.controller.rotate(service, 0)
    release.set()
    assert answer.result(10) is Outcome.CHANGED
    rec.drain()
    assert registry.clients["orders"].secret_version == version + 1
    assert registry.writes["rotate"] == 1
    _, secret = assert_converged(swarm, registry, "orders")
    assert swarm.data(secret.id) == registry.secret_of["orders"].encode()
    rec.close()


def test_a_rotation_that_fails_is_reported_and_not_done_later_behind_the_callers_back(
    swarm, registry
):
    rec, _ = rotating(swarm, registry)
    service = swarm.add_service("orders")
    rec.hint("orders")
    version = registry.clients["orders"].secret_version
    rotate = registry.rotate

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise TransientError("clients API unavailable")

    registry.rotate = unavailable  # type: ignore[method-assign]
    assert rec.controller.rotate(service, 0).result(10) is Outcome.RETRY
    registry.rotate = rotate  # type: ignore[method-assign]
    rec.hint("orders")  # the queue's own retry, and a later hint: no rotation left waiting
    assert registry.clients["orders"].secret_version == version
    assert rec.controller.rotate(service, 0).result(10) is Outcome.CHANGED
    assert registry.clients["orders"].secret_version == version + 1
    rec.close()


@pytest.mark.parametrize("step", ["rotate_client", "create_secret", "update_service"])
def test_a_crash_during_a_rotation_is_finished_without_cutting_off_the_old_tasks(
    swarm, registry, step
):
    first, clock = rotating(swarm, registry, rotation_grace=3600)
    service = swarm.add_service("orders")
    first.hint("orders")
    first.close()
    old_secret = registry.secret_of["orders"]
    _, old = assert_converged(swarm, registry, "orders")
    swarm.old_tasks[service.id] = {old.id}  # its tasks run with the old secret
    clock.now += 31 * DAY
    crashing = make(
        swarm, registry, policy=first.identities.policy, clock=clock,
        rotation_grace=3600, after_step=crash_at(step),
    )  # fmt: skip
    crashing.full_pass()
    crashing.close()
    restarted = make(swarm, registry, policy=first.identities.policy, clock=clock)
    restarted.full_pass()
    # A new secret, mounted; the old one, which the running tasks hold, still works.
    assert registry.secret_of["orders"] != old_secret
    assert registry.accepts("orders", old_secret)
    assert old.id in swarm.secrets  # still used by a task
    swarm.old_tasks[service.id] = set()
    restarted.full_pass()
    _, secret = assert_converged(swarm, registry, "orders")
    assert old.id not in swarm.secrets and secret.id != old.id
    restarted.close()


def test_a_peer_refusing_for_good_is_a_failure_with_its_reason(swarm, registry, reconciler, caplog):
    key = Key.service(swarm.add_service("orders").id)
    registry.fail = Rejected
    with caplog.at_level("ERROR", logger="swarm_oauth.registrar"):
        assert reconciler.reconcile(key) is Outcome.FAILED
    # The peer's reason, in the status and the log, not "an unexpected error" and a
    # traceback of the registrar's own code.
    status = reconciler.board.get(key.id)
    assert status is not None and status.state is State.PENDING
    assert "clients API unavailable" in status.reason
    [record] = [r for r in caplog.records if "reconcile failed" in r.getMessage()]
    assert "clients API unavailable" in record.getMessage() and record.exc_info is None
    registry.fail = None
    assert reconciler.reconcile(key) is Outcome.CHANGED
