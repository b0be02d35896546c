"""The reconcile logic on in-memory stand-ins for Docker and the clients API.

The same behaviour is shown on a real swarm in tests/swarm/test_registrar*.py; here every
branch (each crash point, each conflict) is cheap to reach. The stand-ins enforce the
rules of the real things that matter: unique secret names, no deleting a secret a
service mounts, 409 on a taken client id.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import pytest

from swarm_oauth.registrar.model import (
    ClientInfo,
    DockerSecret,
    IssuedSecret,
    ObservedService,
    SecretRef,
    is_service_ref,
)
from swarm_oauth.registrar.policy import Policy, Selector
from swarm_oauth.registrar.ports import Rejected, ServiceEdit, ServiceGone, TransientError
from swarm_oauth.registrar.reconcile import Outcome, Reconciler
from swarm_oauth.registrar.spec import (
    CLIENT_ID_LABEL,
    INCARNATION_LABEL,
    MANAGED,
    SERVICE_ID_LABEL,
    VERSION_LABEL,
)

TOKEN_URL = "http://oauth-tokens:8080/api/token"
SELECTED = {"swarm-oauth.client": "true"}


class FakeSwarm:
    """An in-memory swarm with the engine's rules that the registrar relies on."""

    def __init__(self) -> None:
        self.services: dict[str, ObservedService] = {}
        self.secrets: dict[str, tuple[DockerSecret, bytes]] = {}
        self.writes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.fail: type[Exception] | None = None
        self._ids = itertools.count(1)

    # test helpers
    def add_service(
        self, name: str, labels: Mapping[str, str] | None = None, **fields: Any
    ) -> ObservedService:
        service = ObservedService(
            id=f"svc{next(self._ids):04d}{secrets.token_hex(8)}",
            name=name,
            labels=dict(labels if labels is not None else SELECTED),
            **fields,
        )
        self.services[service.id] = service
        return service

    def set_service(self, service: ObservedService) -> None:
        self.services[service.id] = service

    def named(self, name: str) -> ObservedService:
        return next(s for s in self.services.values() if s.name == name)

    def data(self, secret_id: str) -> bytes:
        return self.secrets[secret_id][1]

    def managed_secrets(self) -> list[DockerSecret]:
        return self.list_secrets(MANAGED)

    # the port
    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail("engine unavailable")

    def list_services(self) -> list[ObservedService]:
        self._check()
        return list(self.services.values())

    def get_service(self, ref: str) -> ObservedService | None:
        self._check()
        return next((s for s in self.services.values() if ref in (s.id, s.name)), None)

    def list_secrets(self, labels: Mapping[str, str]) -> list[DockerSecret]:
        self._check()
        return [
            s
            for s, _ in self.secrets.values()
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerSecret:
        self._check()
        with self.lock:
            if any(s.name == name for s, _ in self.secrets.values()):
                raise TransientError(f"secret {name} exists")
            secret = DockerSecret(f"sec{next(self._ids):04d}", name, dict(labels))
            self.secrets[secret.id] = (secret, data)
            self.writes["create_secret"] += 1
        return secret

    def update_service(self, service_id: str, edit: ServiceEdit) -> bool:
        self._check()
        with self.lock:
            service = self.services.get(service_id)
            if service is None:
                raise ServiceGone(service_id)
            change = edit(service)
            if change is None:
                return False
            refs, env = change
            targets = [r.target for r in refs]
            if len(set(targets)) != len(targets):
                raise Rejected("duplicate secret target")
            self.set_service(replace(service, secret_refs=tuple(refs), env=tuple(env)))
            self.writes["update_service"] += 1
            return True

    def delete_secret(self, secret_id: str) -> bool:
        self._check()
        with self.lock:
            if secret_id not in self.secrets:
                return False
            users = [
                s.name
                for s in self.services.values()
                if any(r.secret_id == secret_id for r in s.secret_refs)
            ]
            if users:
                raise Rejected(f"secret is in use by {users}")
            del self.secrets[secret_id]
            self.writes["delete_secret"] += 1
            return True

    def ping(self) -> None:
        self._check()


class FakeRegistry:
    """An in-memory clients API that remembers each client's secret to check it."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientInfo] = {}
        self.secret_of: dict[str, str] = {}
        self.writes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.fail: type[Exception] | None = None
        self.delay = 0.0

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail("clients API unavailable")

    def get(self, client_id: str) -> ClientInfo | None:
        self._check()
        return self.clients.get(client_id)

    def list(self) -> list[ClientInfo]:
        self._check()
        return list(self.clients.values())

    def add(
        self,
        client_id: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> IssuedSecret:
        self._check()
        time.sleep(self.delay)
        with self.lock:
            if client_id in self.clients:
                raise TransientError("409")
            client = ClientInfo(client_id, 1, dict(metadata), tuple(scopes), tuple(audiences))
            return self._issue(client, "add")

    def remove(self, client_id: str) -> bool:
        self._check()
        with self.lock:
            self.secret_of.pop(client_id, None)
            if self.clients.pop(client_id, None) is None:
                return False
            self.writes["remove"] += 1
            return True

    def rotate(self, client_id: str) -> IssuedSecret:
        self._check()
        with self.lock:
            client = self.clients[client_id]
            return self._issue(replace(client, secret_version=client.secret_version + 1), "rotate")

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        self._check()
        with self.lock:
            if client_id not in self.clients:
                raise TransientError("404")
            client = replace(self.clients[client_id], scopes=tuple(scopes),
                             audiences=tuple(audiences))  # fmt: skip
            self.clients[client_id] = client
            self.writes["update"] += 1
            return client

    def _issue(self, client: ClientInfo, kind: str) -> IssuedSecret:
        secret = secrets.token_urlsafe(32)
        self.clients[client.client_id] = client
        self.secret_of[client.client_id] = secret
        self.writes[kind] += 1
        return IssuedSecret(client, secret)

    def ping(self) -> None:
        self._check()


class Crash(Exception):
    """Stands for the registrar process dying between two steps."""


def crash_at(step: str, occurrence: int = 1) -> Any:
    seen = Counter[str]()

    def hook(name: str) -> None:
        seen[name] += 1
        if name == step and seen[name] == occurrence:
            raise Crash(step)

    return hook


@pytest.fixture
def swarm() -> FakeSwarm:
    return FakeSwarm()


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry()


def make(swarm: FakeSwarm, registry: FakeRegistry, **kwargs: Any) -> Reconciler:
    return Reconciler(
        swarm, registry, Policy(Selector.parse("swarm-oauth.client=true"), TOKEN_URL), **kwargs
    )


@pytest.fixture
def reconciler(swarm: FakeSwarm, registry: FakeRegistry) -> Any:
    rec = make(swarm, registry)
    yield rec
    rec.close()


def assert_converged(
    swarm: FakeSwarm, registry: FakeRegistry, name: str, target: str = "oauth_client_secret"
) -> tuple[ClientInfo, DockerSecret]:
    """The desired state of DESIGN.md: one client, one current Docker secret holding its
    secret, mounted at the target, the env set, and nothing else of the registrar's."""
    service = swarm.named(name)
    client_id = service.labels.get("swarm-oauth.client-id", name)
    client = registry.clients[client_id]
    assert client.metadata["service_id"] == service.id
    assert client.metadata["service_name"] == name
    ours = swarm.list_secrets({**MANAGED, SERVICE_ID_LABEL: service.id})
    assert len(ours) == 1, ours
    secret = ours[0]
    assert secret.labels[CLIENT_ID_LABEL] == client_id
    assert secret.labels[VERSION_LABEL] == str(client.secret_version)
    assert secret.labels[INCARNATION_LABEL] == client.metadata["incarnation"]
    assert swarm.data(secret.id) == registry.secret_of[client_id].encode()
    mounted = [r for r in service.secret_refs if r.secret_id == secret.id]
    assert mounted == [SecretRef(secret.id, secret.name, target, "0", "0", 0o444)]
    assert f"OAUTH_CLIENT_ID={client_id}" in service.env
    assert f"OAUTH_TOKEN_URL={TOKEN_URL}" in service.env
    assert f"OAUTH_CLIENT_SECRET_FILE=/run/secrets/{target}" in service.env
    return client, secret


def no_orphans(swarm: FakeSwarm, registry: FakeRegistry) -> None:
    live = {s.id for s in swarm.services.values() if s.labels.get("swarm-oauth.client") == "true"}
    for client in registry.clients.values():
        if client.managed:
            assert client.service_id in live, client
    for secret in swarm.managed_secrets():
        assert secret.labels[SERVICE_ID_LABEL] in live, secret


def test_a_selected_service_gets_client_secret_and_env(swarm, registry, reconciler):
    swarm.add_service("orders", {**SELECTED, "swarm-oauth.scopes": "read write"}, env=("A=1",))
    assert reconciler.reconcile_service("orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")
    assert client.scopes == ("read", "write")
    assert swarm.named("orders").env[0] == "A=1"


def test_a_second_pass_and_duplicate_hints_change_nothing(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    before = (Counter(swarm.writes), Counter(registry.writes), swarm.named("orders"))
    assert reconciler.reconcile_service("orders") is Outcome.UNCHANGED
    assert reconciler.reconcile_service(swarm.named("orders").id) is Outcome.UNCHANGED
    assert reconciler.full_pass() == Counter({Outcome.UNCHANGED: 1})
    assert (swarm.writes, registry.writes, swarm.named("orders")) == before


def test_unselected_services_are_never_touched(swarm, registry, reconciler):
    plain = swarm.add_service("plain", {"swarm-oauth.client": "false"}, env=("X=1",))
    assert reconciler.reconcile_service("plain") is Outcome.IGNORED
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
        first.reconcile_service("orders")
        first.close()
        _, secret = assert_converged(swarm, registry, "orders")
        if step == "rotate_client":
            service = swarm.named("orders")
            swarm.set_service(replace(service, secret_refs=()))
            swarm.delete_secret(secret.id)
        else:
            registry.rotate("orders")  # current generation now missing: rotate, then delete
    crashing = make(swarm, registry, after_step=crash_at(step))
    assert crashing.reconcile_service("orders") is Outcome.FAILED
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
    crashing.reconcile_service("orders")
    assert registry.clients["orders"].secret_version == 1 and not swarm.secrets
    make(swarm, registry).reconcile_service("orders")
    client, _ = assert_converged(swarm, registry, "orders")
    assert client.secret_version == 2
    assert registry.writes == Counter({"add": 1, "rotate": 1})


def test_a_dropped_secret_reference_is_reattached_without_rotation(swarm, registry, reconciler):
    swarm.add_service("orders", env=("KEEP=me",))
    reconciler.reconcile_service("orders")
    client, secret = assert_converged(swarm, registry, "orders")
    service = swarm.named("orders")
    # What `docker stack deploy` with the original spec does: refs and env are replaced.
    swarm.set_service(replace(service, secret_refs=(), env=("KEEP=me",)))
    assert reconciler.reconcile_service("orders") is Outcome.CHANGED
    again, same = assert_converged(swarm, registry, "orders")
    assert (again.secret_version, same.id) == (client.secret_version, secret.id)
    assert registry.writes == Counter({"add": 1})
    assert swarm.named("orders").env[0] == "KEEP=me"


def test_removing_the_service_removes_client_and_secrets(swarm, registry, reconciler):
    service = swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    del swarm.services[service.id]
    assert reconciler.reconcile_service("orders") is Outcome.REMOVED
    assert not registry.clients and not swarm.secrets
    assert reconciler.reconcile_service("orders") is Outcome.IGNORED


def test_a_remove_event_by_service_id_retires_it(swarm, registry, reconciler):
    service = swarm.add_service("orders")
    reconciler.reconcile_service(service.id)
    del swarm.services[service.id]
    assert reconciler.reconcile_service(service.id) is Outcome.REMOVED
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
    reconciler.reconcile_service("orders")
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
    first.reconcile_service("orders")
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
    assert reconciler.reconcile_service("theirs") is Outcome.IGNORED
    reconciler.full_pass()
    assert swarm.named("theirs") == before and swarm.writes == writes


def test_a_service_recreated_under_the_same_name_gets_a_fresh_client(swarm, registry, reconciler):
    old = swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    old_secret = registry.secret_of["orders"]
    del swarm.services[old.id]
    new = swarm.add_service("orders")
    assert reconciler.reconcile_service("orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")
    assert client.service_id == new.id
    assert registry.secret_of["orders"] != old_secret
    no_orphans(swarm, registry)


def test_a_client_the_registrar_did_not_create_is_left_alone(swarm, registry, reconciler):
    registry.add("orders", ["admin"], [], {"owner": "alice"})
    service = swarm.add_service("orders")
    assert reconciler.reconcile_service("orders") is Outcome.CONFLICT
    reconciler.full_pass()
    assert registry.clients["orders"].metadata == {"owner": "alice"}
    assert registry.writes == Counter({"add": 1})
    assert swarm.named("orders") == service and not swarm.secrets


def test_two_live_services_claiming_one_client_id(swarm, registry, reconciler):
    swarm.add_service("a", {**SELECTED, "swarm-oauth.client-id": "shared"})
    reconciler.reconcile_service("a")
    b = swarm.add_service("b", {**SELECTED, "swarm-oauth.client-id": "shared"})
    assert reconciler.reconcile_service("b") is Outcome.CONFLICT
    assert swarm.named("b") == b
    assert registry.clients["shared"].service_id == swarm.named("a").id
    assert_converged(swarm, registry, "a")


def test_a_foreign_secret_at_the_target_is_a_conflict(swarm, registry, reconciler):
    theirs = swarm.create_secret("theirs", b"x", {})
    ref = SecretRef(theirs.id, theirs.name, "oauth_client_secret")
    service = swarm.add_service("orders", secret_refs=(ref,))
    assert reconciler.reconcile_service("orders") is Outcome.CONFLICT
    assert swarm.named("orders") == service and not registry.clients


def test_changed_scopes_update_the_client_in_place(swarm, registry, reconciler):
    swarm.add_service("orders", {**SELECTED, "swarm-oauth.scopes": "read"})
    reconciler.reconcile_service("orders")
    secret_before = registry.secret_of["orders"]
    service = swarm.named("orders")
    labels = {**service.labels, "swarm-oauth.scopes": "read write", "swarm-oauth.audience": "api"}
    swarm.set_service(replace(service, labels=labels))
    assert reconciler.reconcile_service("orders") is Outcome.CHANGED
    client, _ = assert_converged(swarm, registry, "orders")
    assert (client.scopes, client.audiences) == (("read", "write"), ("api",))
    # Same secret, no new Docker secret, no restart of the service's tasks.
    assert registry.secret_of["orders"] == secret_before
    assert registry.writes["update"] == 1
    assert registry.writes["rotate"] == 0 and registry.writes["remove"] == 0
    assert reconciler.reconcile_service("orders") is Outcome.UNCHANGED


def test_a_changed_client_id_label_moves_the_service_to_a_new_client(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    service = swarm.named("orders")
    swarm.set_service(replace(service, labels={**service.labels, CLIENT_ID_LABEL: "orders-v2"}))
    reconciler.full_pass()
    assert set(registry.clients) == {"orders-v2"}
    assert_converged(swarm, registry, "orders")


def test_a_changed_target_moves_the_mount(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    service = swarm.named("orders")
    swarm.set_service(
        replace(service, labels={**service.labels, "swarm-oauth.secret-target": "id"})
    )
    reconciler.reconcile_service("orders")
    assert_converged(swarm, registry, "orders", target="id")
    assert len(swarm.named("orders").secret_refs) == 1


def test_invalid_labels_touch_nothing_and_keep_an_existing_identity(swarm, registry, reconciler):
    bad = swarm.add_service("bad", {**SELECTED, CLIENT_ID_LABEL: "no spaces allowed"})
    assert reconciler.reconcile_service("bad") is Outcome.INVALID
    assert swarm.named("bad") == bad and not registry.clients
    swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    service = swarm.named("orders")
    swarm.set_service(replace(service, labels={**service.labels, "swarm-oauth.scopes": 'a"b'}))
    assert reconciler.full_pass()[Outcome.INVALID] == 2
    assert "orders" in registry.clients and len(swarm.secrets) == 1


def test_a_stack_service_is_found_by_its_short_name(swarm, registry, reconciler):
    stack = {**SELECTED, "com.docker.stack.namespace": "shop"}
    service = swarm.add_service("shop_orders", stack)
    assert reconciler.reconcile_service("orders") is Outcome.CHANGED
    assert_converged(swarm, registry, "shop_orders")
    del swarm.services[service.id]
    assert reconciler.reconcile_service("orders") is Outcome.REMOVED
    assert not registry.clients and not swarm.secrets


def test_hints_are_checked_against_docker(swarm, registry, reconciler):
    swarm.add_service("orders")
    reconciler.reconcile_service("orders")
    writes = (Counter(swarm.writes), Counter(registry.writes))
    # a forged create for an unknown service, and a forged remove for a live one
    assert reconciler.reconcile_service("ghost") is Outcome.IGNORED
    assert reconciler.reconcile_service("orders") is Outcome.UNCHANGED
    assert (swarm.writes, registry.writes) == writes
    assert_converged(swarm, registry, "orders")


@pytest.mark.parametrize("part", ["swarm", "registry"])
def test_transient_failures_ask_for_a_retry(swarm, registry, reconciler, part):
    swarm.add_service("orders")
    (swarm if part == "swarm" else registry).fail = TransientError
    assert reconciler.reconcile_service("orders") is Outcome.RETRY
    swarm.fail = registry.fail = None
    assert reconciler.reconcile_service("orders") is Outcome.CHANGED


def test_an_unexpected_error_reading_the_service_is_a_failure_not_a_crash(swarm, reconciler):
    swarm.add_service("orders")
    swarm.fail = KeyError
    assert reconciler.reconcile_service("orders") is Outcome.FAILED


@pytest.mark.parametrize("ref", ["../../info", "a/b", ".x", "-x", "", "x" * 64, "a b", "a?b"])
def test_a_reference_no_docker_service_can_have_is_ignored_unread(swarm, registry, reconciler, ref):
    swarm.fail = registry.fail = AssertionError  # neither may even be read
    assert reconciler.reconcile_service(ref) is Outcome.IGNORED


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
        outcomes.append(reconciler.reconcile_service("orders"))

    threads = [threading.Thread(target=hint) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Serialized, the first registers it and the others find it done (none lost a race).
    assert Counter(outcomes) == Counter({Outcome.CHANGED: 1, Outcome.UNCHANGED: 7})
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
