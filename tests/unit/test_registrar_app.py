"""The registrar's HTTP side, with requests in swarm-listener's exact wire format.

Docker and the clients API are the in-memory stand-ins of tests/support/fakes.py; the real
ones are used by tests/swarm/test_registrar*.py.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from swarm_oauth.admin_token import SharedSecret
from swarm_oauth.registrar.app import MAX_ROTATE_BODY_BYTES, create_app
from swarm_oauth.registrar.policy_file import parse_policy
from swarm_oauth.registrar.ports import Rejected, TransientError
from tests.support.fakes import (
    SELECTED,
    FakeRegistry,
    FakeSwarm,
    assert_converged,
)
from tests.support.registrar import InProcessRegistrar

# swarm-listener's User-Agent and headers (docs/swarm-listener.md): no body, no type.
GO_GET = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
GO_POST = {**GO_GET, "Content-Length": "0"}


class Client:
    """Synchronous requests to the ASGI app in-process (no server, no lifespan)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(
        self, method: str, url: str, headers: dict[str, str] | None = None, content: Any = None
    ) -> Any:
        async def go() -> httpx.Response:
            # As a server would: the app's answer, not the exception, even for a 500.
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://rx") as client:
                return await client.request(method, url, headers=headers, content=content)

        return asyncio.run(go())

    def get(self, url: str, headers: dict[str, str] | None = None) -> Any:
        return self.request("GET", url, headers)

    def post(self, url: str, headers: dict[str, str] | None = None) -> Any:
        return self.request("POST", url, headers)

    def put(self, url: str) -> Any:
        return self.request("PUT", url)


@dataclass
class Parts:
    swarm: FakeSwarm
    registry: FakeRegistry
    registrar: InProcessRegistrar
    client: Client


ADMIN = "admin-token-for-tests"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture
def make_parts() -> Iterator[Any]:
    made: list[InProcessRegistrar] = []

    def make(notify_token: str | None = None, **options: Any) -> Parts:
        swarm, registry = FakeSwarm(), FakeRegistry()
        registrar = InProcessRegistrar(swarm, registry, selector="com.df.notify=true", **options)
        made.append(registrar)
        app = create_app(
            registrar.controller,
            swarm,
            registry,
            registrar.metrics,
            admin_token=SharedSecret.of(ADMIN),
            notify_token=SharedSecret.of(notify_token) if notify_token else None,
        )
        return Parts(swarm, registry, registrar, Client(app))

    yield make
    for registrar in made:
        registrar.close()


@pytest.fixture
def parts(make_parts: Any) -> Parts:
    return make_parts()  # type: ignore[no-any-return]


def send(client: Client, method: str, path_and_query: str) -> Any:
    """A request as Go's http.DefaultClient sends it: the query string verbatim."""
    headers = GO_POST if method == "POST" else GO_GET
    return client.request(method, path_and_query, headers=headers)


LABELS = {**SELECTED, "com.df.notify": "true", "com.df.oauthScopes": "read,write"}


def test_an_engine_that_answers_pings_and_nothing_else_is_not_ready(parts, monkeypatch):
    # A worker node's engine (or a socket proxy that lets _ping through) answers a ping,
    # and refuses every listing: the registrar can do nothing there.
    def not_a_manager() -> Any:
        raise TransientError("list services: This node is not a swarm manager.")

    monkeypatch.setattr(parts.swarm, "list_services", not_a_manager)
    ready = lambda: parts.registrar.metrics.registry.get_sample_value(  # noqa: E731
        "swarm_oauth_registrar_ready"
    )
    assert parts.client.post("/v1/reconcile", headers=ADMIN_HEADERS).status_code == 503
    for _ in range(2):  # asking again does not turn the metric back to ready
        response = parts.client.get("/readyz")
        assert response.status_code == 503
        assert (
            "the last full pass failed: list services: This node is not a swarm manager"
            in (response.json()["reason"])
        )
        assert ready() == 0
    monkeypatch.undo()
    assert parts.client.post("/v1/reconcile", headers=ADMIN_HEADERS).status_code == 200
    assert parts.client.get("/readyz").status_code == 200 and ready() == 1


def test_a_notification_is_answered_before_its_reconcile_ends(parts):
    # swarm-listener counts only a 200 as delivered and retries anything slower or else:
    # the answer must not wait for the clients API.
    import threading

    parts.swarm.add_service("orders", LABELS)
    entered, release = threading.Event(), threading.Event()
    add = parts.registry.add

    def held_add(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return add(*args, **kwargs)

    parts.registry.add = held_add  # type: ignore[method-assign]
    try:
        response = send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
        assert response.status_code == 200
        assert entered.wait(10)  # the reconcile has started and is held in the clients API
        assert not parts.registry.clients
    finally:
        release.set()
    parts.registrar.drain()
    assert_converged(parts.swarm, parts.registry, "orders")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_create_is_200_once_queued_and_the_service_converges(parts, method):
    service = parts.swarm.add_service("orders", LABELS)
    query = "distribute=true&oauthScopes=read%2Cwrite&replicas=1&serviceName=orders"
    response = send(parts.client, method, f"/v1/swarm-listener/notify-create?{query}")
    assert response.status_code == 200
    assert response.json() == {"serviceName": "orders", "queued": [f"service:{service.id}"]}
    parts.registrar.drain()
    assert_converged(parts.swarm, parts.registry, "orders")
    writes = Counter(parts.swarm.writes)
    again = send(parts.client, method, f"/v1/swarm-listener/notify-create?{query}")
    parts.registrar.drain()
    assert again.status_code == 200 and parts.swarm.writes == writes


def test_the_configured_urls_own_parameters_come_first(parts):
    parts.swarm.add_service("shop_orders", {**LABELS, "com.docker.stack.namespace": "shop"})
    query = (
        "token=s3cr3t&distribute=true&nodeInfo=%5B%5B%22node-1%22%2C%2210.0.1.5%22%2C%22n1id"
        "%22%5D%5D&oauthScopes=read%2Cwrite&replicas=3&scrapeNetwork=shop_default"
        "&serviceName=orders&shortName=true"
    )
    response = send(parts.client, "GET", f"/v1/swarm-listener/notify-create?{query}")
    assert response.status_code == 200 and len(response.json()["queued"]) == 1
    parts.registrar.drain()
    assert_converged(parts.swarm, parts.registry, "shop_orders")


def test_a_short_name_reaches_its_stack_service_beside_one_named_so(parts):
    # swarm-listener sends "api" for shop_api; a service named "api" of its own must not
    # take the notification from it.
    plain = parts.swarm.add_service("api", LABELS)
    stacked = parts.swarm.add_service("shop_api", {**LABELS, "com.docker.stack.namespace": "shop"})
    response = send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=api")
    assert response.status_code == 200
    assert response.json()["queued"] == [f"service:{plain.id}", f"service:{stacked.id}"]
    parts.registrar.drain()
    assert_converged(parts.swarm, parts.registry, "shop_api")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_remove_for_a_service_never_seen_is_200_and_queues_nothing(parts, method):
    query = "distribute=true&serviceName=ghost"
    response = send(parts.client, method, f"/v1/swarm-listener/notify-remove?{query}")
    assert (response.status_code, response.json()["queued"]) == (200, [])


def test_a_forged_remove_for_a_live_service_removes_nothing(parts):
    parts.swarm.add_service("orders", LABELS)
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    response = send(parts.client, "GET", "/v1/swarm-listener/notify-remove?serviceName=orders")
    parts.registrar.drain()
    assert response.status_code == 200
    assert_converged(parts.swarm, parts.registry, "orders")


def test_a_remove_after_the_service_went_removes_its_identity(parts):
    service = parts.swarm.add_service("orders", LABELS)
    send(parts.client, "POST", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    del parts.swarm.services[service.id]
    response = send(parts.client, "POST", "/v1/swarm-listener/notify-remove?serviceName=orders")
    assert response.status_code == 200 and response.json()["queued"]
    parts.registrar.drain()
    assert not parts.registry.clients and not parts.swarm.secrets


def test_a_forged_create_for_an_unselected_service_creates_nothing(parts):
    parts.swarm.add_service("plain", {"com.df.notify": "false"})
    response = send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=plain")
    parts.registrar.drain()
    assert response.status_code == 200
    assert not parts.registry.clients and not parts.swarm.writes


@pytest.mark.parametrize(
    "query", ["", "?distribute=true", "?serviceName=", "?serviceName=" + "x" * 300]
)
def test_a_request_without_a_usable_service_name_is_400(parts, query):
    response = send(parts.client, "GET", f"/v1/swarm-listener/notify-create{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "name", ["..%2F..%2Finfo", "../../info", "a/b", "-x", ".hidden", "x" * 64, "a%3Fb", "a%00"]
)
@pytest.mark.parametrize("kind", ["create", "remove"])
def test_a_name_docker_would_not_accept_is_400_and_reaches_nothing(parts, kind, name):
    parts.swarm.fail = parts.registry.fail = AssertionError  # neither may even be read
    response = send(parts.client, "GET", f"/v1/swarm-listener/notify-{kind}?serviceName={name}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "Docker service name" in response.json()["error_description"]


def test_an_unexpected_error_is_a_json_500(parts):
    parts.swarm.fail = RuntimeError  # the readiness check only expects the port's errors
    for response in (
        parts.client.get("/readyz"),
        send(parts.client, "GET", "/v1/swarm-listener/notify-remove?serviceName=orders"),
    ):
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "server_error", "error_description": "internal error"}


def test_a_hint_docker_cannot_resolve_now_is_503_so_swarm_listener_retries(parts):
    parts.swarm.add_service("orders", LABELS)
    parts.swarm.fail = TransientError
    response = send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


def test_a_failing_reconcile_does_not_change_the_answer(parts):
    parts.swarm.add_service("orders", LABELS)
    parts.registry.fail = Rejected
    response = send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    assert response.status_code == 200
    parts.registrar.drain()
    text = parts.client.get("/metrics").text
    assert 'swarm_oauth_registrar_reconciles_total{outcome="failed"} 1.0' in text


def test_wrong_methods_and_paths_get_the_error_shape(parts):
    client = parts.client
    assert client.put("/v1/swarm-listener/notify-create?serviceName=x").json()["error"] == (
        "method_not_allowed"
    )
    assert client.get("/v1/nope").json()["error"] == "not_found"
    assert client.get("/v1/reconcile").status_code == 405
    # Starlette answers HEAD wherever GET is allowed: here it would queue work.
    parts.swarm.add_service("orders", LABELS)
    head = client.request("HEAD", "/v1/swarm-listener/notify-create?serviceName=orders")
    assert head.status_code == 405
    assert head.headers["allow"] == "GET, POST"
    parts.registrar.drain()
    assert "orders" not in parts.registry.clients


def test_a_forced_full_pass_reports_outcomes(parts):
    parts.swarm.add_service("a", LABELS)
    parts.swarm.add_service("b", LABELS)
    parts.swarm.add_service("plain", {})
    response = parts.client.post("/v1/reconcile")
    assert response.status_code == 200
    assert response.json() == {"outcomes": {"changed": 2}}
    assert parts.client.post("/v1/reconcile").json() == {"outcomes": {"unchanged": 2}}
    parts.swarm.fail = TransientError
    assert parts.client.post("/v1/reconcile").status_code == 503


def test_concurrent_forced_passes_each_get_a_whole_pass(parts):
    for index in range(5):
        parts.swarm.add_service(f"s{index}", LABELS)

    async def many() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=parts.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://rx") as client:
            return await asyncio.gather(*(client.post("/v1/reconcile") for _ in range(10)))

    responses = asyncio.run(many())
    assert {r.status_code for r in responses} == {200}
    # Each answer is a whole pass over the five, whether it ran it or joined it (that
    # requests share the next pass is pinned in test_registrar_queue.py).
    for response in responses:
        assert sum(response.json()["outcomes"].values()) == 5


def test_health_and_readiness(parts):
    assert parts.client.get("/healthz").json()["status"] == "ok"
    assert parts.client.get("/readyz").status_code == 200
    parts.registry.fail = TransientError
    response = parts.client.get("/readyz")
    assert response.status_code == 503 and "client registry" in response.json()["reason"]
    # Alive while only the registry is away: replacing the registrar would not bring it back.
    assert parts.client.get("/healthz").status_code == 200
    parts.registry.fail, parts.swarm.fail = None, TransientError
    response = parts.client.get("/readyz")
    assert response.status_code == 503 and "docker" in response.json()["reason"]
    # Without Docker it is not alive: the image's health check has the task replaced.
    response = parts.client.get("/healthz")
    assert response.status_code == 503 and response.json()["reason"].startswith("docker: ")


def test_metrics_count_reconciles_actions_and_passes(parts):
    parts.swarm.add_service("orders", LABELS)
    parts.client.post("/v1/reconcile")
    parts.client.post("/v1/reconcile")
    text = parts.client.get("/metrics").text
    assert 'swarm_oauth_registrar_reconciles_total{outcome="changed"} 1.0' in text
    assert 'swarm_oauth_registrar_reconciles_total{outcome="unchanged"} 1.0' in text
    assert 'swarm_oauth_registrar_actions_total{kind="add_client",outcome="ok"} 1.0' in text
    assert 'swarm_oauth_registrar_actions_total{kind="update_service",outcome="ok"} 1.0' in text
    assert "swarm_oauth_registrar_managed_services 1.0" in text
    assert "swarm_oauth_registrar_last_full_pass_timestamp_seconds 0.0" not in text


def test_services_lists_every_selected_service_with_its_state(make_parts):
    parts = make_parts(policy=parse_policy("default: {scopes: [read]}\n", "policy.yml"))
    good = parts.swarm.add_service("good", {**LABELS, "swarm-oauth.scopes": "read"})
    bad = parts.swarm.add_service("bad", {**LABELS, "swarm-oauth.scopes": "read admin"})
    parts.swarm.add_service("late", LABELS)  # selected, not reconciled yet
    parts.swarm.add_service("plain", {})
    for name in ("good", "bad"):
        send(parts.client, "GET", f"/v1/swarm-listener/notify-create?serviceName={name}")
    parts.registrar.drain()
    assert parts.client.get("/v1/services").status_code == 401
    response = parts.client.get("/v1/services", headers=ADMIN_HEADERS)
    services = {s["service_name"]: s for s in response.json()["services"]}
    assert set(services) == {"good", "bad", "late"}
    assert services["good"]["state"] == "registered" and services["good"]["client_id"] == "good"
    assert services["good"]["secret"].startswith("oauth-good-") and services["good"]["converged_at"]
    assert (services["bad"]["state"], services["bad"]["client_id"]) == ("refused", None)
    assert "swarm-oauth.scopes asks for admin" in services["bad"]["reason"]
    assert services["bad"]["service_id"] == bad.id and services["good"]["service_id"] == good.id
    assert services["late"]["state"] == "pending"
    text = parts.client.get("/metrics").text
    assert 'swarm_oauth_registrar_services{state="registered"} 1.0' in text
    assert 'swarm_oauth_registrar_services{state="refused"} 1.0' in text
    assert 'swarm_oauth_registrar_refusals_total{reason="scope_not_allowed"} 1.0' in text


def test_reservations_are_listed_and_released_with_the_admin_token(parts):
    service = parts.swarm.add_service("orders", LABELS)
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    del parts.swarm.services[service.id]
    send(parts.client, "GET", "/v1/swarm-listener/notify-remove?serviceName=orders")
    parts.registrar.drain()
    assert parts.client.get("/v1/reservations").status_code == 401
    listed = parts.client.get("/v1/reservations", headers=ADMIN_HEADERS).json()["reservations"]
    assert [(r["client_id"], r["service_name"], r["expired"]) for r in listed] == [
        ("orders", "orders", False)
    ]
    wrong = parts.client.request("DELETE", "/v1/reservations/orders", {"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    released = parts.client.request("DELETE", "/v1/reservations/orders", ADMIN_HEADERS)
    assert released.json() == {"client_id": "orders", "released": True}
    again = parts.client.request("DELETE", "/v1/reservations/orders", ADMIN_HEADERS)
    assert again.status_code == 404 and "not reserved" in again.json()["error_description"]


def test_with_a_notify_token_notifications_and_passes_need_it(make_parts, caplog):
    parts = make_parts(notify_token="n0tify")
    parts.swarm.add_service("orders", LABELS)
    path = "/v1/swarm-listener/notify-create"
    for query in ("?serviceName=orders", "?token=wrong&serviceName=orders"):
        refused = send(parts.client, "GET", path + query)
        assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
        assert refused.headers["www-authenticate"].startswith("Bearer")
    assert parts.client.post("/v1/reconcile").status_code == 401
    parts.registrar.drain()
    assert not parts.registry.clients
    # swarm-listener can only put it in the URL, where the configured URL's own comes first.
    ok = send(parts.client, "GET", path + "?token=n0tify&serviceName=orders")
    assert ok.status_code == 200
    bearer = parts.client.request(
        "POST", path + "?serviceName=orders", {"Authorization": "Bearer n0tify"}
    )
    assert bearer.status_code == 200
    assert parts.client.post("/v1/reconcile", headers=ADMIN_HEADERS).status_code == 200
    parts.registrar.drain()
    assert "orders" in parts.registry.clients
    assert "n0tify" not in caplog.text


def test_a_rotation_on_request_answers_once_the_new_secret_is_mounted(parts):
    service = parts.swarm.add_service("orders", LABELS)
    plain = parts.swarm.add_service("plain", {})
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    version = parts.registry.clients["orders"].secret_version
    path = "/v1/services/orders/rotate"
    assert parts.client.request("POST", path).status_code == 401
    rotated = parts.client.request("POST", path, ADMIN_HEADERS)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["rotated"] is True and rotated.json()["grace_seconds"] == 3600
    assert parts.registry.clients["orders"].secret_version == version + 1
    mounted = parts.swarm.named("orders").secret_refs[0].secret_name
    assert rotated.json()["secret"] == mounted
    assert parts.registrar.board.get(service.id).secret == mounted
    for name, status in (("plain", 409), ("ghost", 404), ("-x", 400)):
        answer = parts.client.request("POST", f"/v1/services/{name}/rotate", ADMIN_HEADERS)
        assert answer.status_code == status, (name, answer.text)
    assert (
        "no identity to rotate"
        in parts.client.request("POST", "/v1/services/plain/rotate", ADMIN_HEADERS).json()[
            "error_description"
        ]
    )
    assert plain.id in parts.swarm.services


def test_a_rotation_with_a_grace_waits_for_the_last_one_to_roll_out(parts):
    # The registry keeps one previous secret: a second rotation while tasks still run
    # with the first one's old secret would stop theirs at once, grace or not.
    service = parts.swarm.add_service("orders", LABELS)
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    first = parts.registry.secret_of["orders"]
    parts.swarm.old_tasks[service.id] = {
        r.secret_id for r in parts.swarm.named("orders").secret_refs
    }
    path = "/v1/services/orders/rotate"
    assert parts.client.request("POST", path, ADMIN_HEADERS).status_code == 200
    version = parts.registry.clients["orders"].secret_version
    refused = parts.client.request("POST", path, ADMIN_HEADERS)
    assert refused.status_code == 409, refused.text
    assert "still run with its previous secret" in refused.json()["error_description"]
    assert parts.registry.clients["orders"].secret_version == version
    assert parts.registry.accepts("orders", first)  # the tasks on it keep working
    # A leaked secret does not wait: grace 0 goes through, and their secret stops.
    now = parts.client.request("POST", path, ADMIN_HEADERS, '{"grace_seconds": 0}')
    assert now.status_code == 200, now.text
    assert not parts.registry.accepts("orders", first)
    # Once no task runs with an old secret, a rotation with a grace goes through again.
    parts.swarm.old_tasks[service.id] = set()
    parts.registrar.full_pass()
    assert parts.client.request("POST", path, ADMIN_HEADERS).status_code == 200


def test_a_grace_of_minus_zero_is_a_grace_of_zero(parts):
    parts.swarm.add_service("orders", LABELS)
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    path = "/v1/services/orders/rotate"
    rotated = parts.client.request("POST", path, ADMIN_HEADERS, '{"grace_seconds": -0.0}')
    assert rotated.status_code == 200, rotated.text
    assert math.copysign(1.0, rotated.json()["grace_seconds"]) == 1.0


def test_a_rotation_whose_new_secret_cannot_be_stored_is_not_answered_done(parts):
    parts.swarm.add_service("orders", LABELS)
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    before = parts.swarm.named("orders").secret_refs[0].secret_name
    create = parts.swarm.create_secret
    failures = iter([TransientError("engine unavailable")])

    def create_once_failing(*args: Any, **kwargs: Any) -> Any:
        if (error := next(failures, None)) is not None:
            raise error
        return create(*args, **kwargs)

    parts.swarm.create_secret = create_once_failing  # type: ignore[method-assign]
    body = '{"grace_seconds": 0}'
    answer = parts.client.request("POST", "/v1/services/orders/rotate", ADMIN_HEADERS, body)
    # The client rotated, its new secret never reached Docker: not "rotated" (the old
    # secret, mounted still, no longer works), but a failure to retry.
    assert answer.status_code == 503, answer.text
    assert "retry" in answer.json()["error_description"]
    # The next run (a retry, or the full pass here) mounts a secret that works.
    assert parts.client.post("/v1/reconcile", headers=ADMIN_HEADERS).status_code == 200
    parts.registrar.drain()
    after = parts.swarm.named("orders").secret_refs[0].secret_name
    assert after != before
    mounted = next(secret.id for secret, _ in parts.swarm.secrets.values() if secret.name == after)
    assert parts.registry.accepts("orders", parts.swarm.data(mounted).decode())


@pytest.mark.parametrize(
    "body",
    [
        '{"grace_seconds": -1}',
        '{"grace_seconds": "1h"}',
        "not json",
        '{"grace_seconds": 9e9}',
        '{"grace_seconds": 0.9}',  # would have been cut to 0 s
        # Nested deeper than Python 3.11's parser goes (within the size cap: 3.12 reads
        # deeper, and refuses it as unfinished).
        "[" * 1020,
        '{"grace_seconds": 60}'.encode("utf-16"),
    ],
)
def test_a_rotation_request_with_a_bad_grace_is_400(parts, body):
    parts.swarm.add_service("orders", LABELS)
    response = parts.client.request(
        "POST", "/v1/services/orders/rotate", ADMIN_HEADERS, content=body
    )
    assert response.status_code == 400 and "grace_seconds" in response.json()["error_description"]


def test_a_rotation_request_with_a_body_over_the_cap_is_413(parts):
    parts.swarm.add_service("orders", LABELS)
    send(parts.client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    parts.registrar.drain()
    version = parts.registry.clients["orders"].secret_version
    body = '{"grace_seconds": 60' + " " * MAX_ROTATE_BODY_BYTES + "}"
    response = parts.client.request(
        "POST", "/v1/services/orders/rotate", ADMIN_HEADERS, content=body
    )
    assert response.status_code == 413
    assert f"{MAX_ROTATE_BODY_BYTES} bytes" in response.json()["error_description"]
    assert parts.registry.clients["orders"].secret_version == version  # nothing rotated


def test_a_path_with_a_trailing_slash_is_404_not_a_redirect(parts):
    answer = parts.client.request("POST", "/v1/reconcile/", headers=ADMIN_HEADERS)
    assert answer.status_code == 404
    assert "location" not in answer.headers
