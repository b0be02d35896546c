"""The registrar's HTTP side, with requests in swarm-listener's exact wire format.

Docker and the clients API are the in-memory stand-ins of test_reconcile.py; the real
ones are used by tests/swarm/test_registrar*.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from swarm_oauth.registrar.app import create_app
from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.policy import Policy, Selector
from swarm_oauth.registrar.ports import Rejected, TransientError
from swarm_oauth.registrar.reconcile import Reconciler
from tests.unit.test_reconcile import (
    SELECTED,
    TOKEN_URL,
    FakeRegistry,
    FakeSwarm,
    assert_converged,
)

# swarm-listener's User-Agent and headers (swarm-listener.md, section 2): no body, no type.
GO_GET = {"User-Agent": "Go-http-client/1.1", "Accept-Encoding": "gzip"}
GO_POST = {**GO_GET, "Content-Length": "0"}


class Client:
    """Synchronous requests to the ASGI app in-process (no server, no lifespan)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(self, method: str, url: str, headers: dict[str, str] | None = None) -> Any:
        async def go() -> httpx.Response:
            # As a server would: the app's answer, not the exception, even for a 500.
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://rx") as client:
                return await client.request(method, url, headers=headers)

        return asyncio.run(go())

    def get(self, url: str) -> Any:
        return self.request("GET", url)

    def post(self, url: str) -> Any:
        return self.request("POST", url)

    def put(self, url: str) -> Any:
        return self.request("PUT", url)


@pytest.fixture
def parts() -> Iterator[tuple[FakeSwarm, FakeRegistry, RegistrarMetrics, Client]]:
    swarm, registry, metrics = FakeSwarm(), FakeRegistry(), RegistrarMetrics()
    policy = Policy(Selector.parse("com.df.notify=true"), TOKEN_URL)
    reconciler = Reconciler(swarm, registry, policy, observer=metrics)
    yield swarm, registry, metrics, Client(create_app(reconciler, swarm, registry, metrics))
    reconciler.close()


def send(client: Client, method: str, path_and_query: str) -> Any:
    """A request as Go's http.DefaultClient sends it: the query string verbatim."""
    headers = GO_POST if method == "POST" else GO_GET
    return client.request(method, path_and_query, headers=headers)


LABELS = {**SELECTED, "com.df.notify": "true", "com.df.oauthScopes": "read,write"}


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_create_reconciles_the_service_then_answers_200(parts, method):
    swarm, registry, _, client = parts
    swarm.add_service("orders", LABELS)
    query = "distribute=true&oauthScopes=read%2Cwrite&replicas=1&serviceName=orders"
    response = send(client, method, f"/v1/swarm-listener/notify-create?{query}")
    assert response.status_code == 200
    assert response.json() == {"serviceName": "orders", "outcome": "changed"}
    assert_converged(swarm, registry, "orders")
    again = send(client, method, f"/v1/swarm-listener/notify-create?{query}")
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")


def test_the_configured_urls_own_parameters_come_first(parts):
    swarm, registry, _, client = parts
    swarm.add_service("shop_orders", {**LABELS, "com.docker.stack.namespace": "shop"})
    query = (
        "token=s3cr3t&distribute=true&nodeInfo=%5B%5B%22node-1%22%2C%2210.0.1.5%22%2C%22n1id"
        "%22%5D%5D&oauthScopes=read%2Cwrite&replicas=3&scrapeNetwork=shop_default"
        "&serviceName=orders&shortName=true"
    )
    response = send(client, "GET", f"/v1/swarm-listener/notify-create?{query}")
    assert (response.status_code, response.json()["outcome"]) == (200, "changed")
    assert_converged(swarm, registry, "shop_orders")


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_remove_for_a_service_never_seen_is_200(parts, method):
    *_, client = parts
    response = send(
        client, method, "/v1/swarm-listener/notify-remove?distribute=true&serviceName=ghost"
    )
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


def test_a_forged_remove_for_a_live_service_removes_nothing(parts):
    swarm, registry, _, client = parts
    swarm.add_service("orders", LABELS)
    send(client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    response = send(client, "GET", "/v1/swarm-listener/notify-remove?serviceName=orders")
    assert (response.status_code, response.json()["outcome"]) == (200, "unchanged")
    assert_converged(swarm, registry, "orders")


def test_a_remove_after_the_service_went_removes_its_identity(parts):
    swarm, registry, _, client = parts
    service = swarm.add_service("orders", LABELS)
    send(client, "POST", "/v1/swarm-listener/notify-create?serviceName=orders")
    del swarm.services[service.id]
    response = send(client, "POST", "/v1/swarm-listener/notify-remove?serviceName=orders")
    assert (response.status_code, response.json()["outcome"]) == (200, "removed")
    assert not registry.clients and not swarm.secrets


def test_a_forged_create_for_an_unselected_service_creates_nothing(parts):
    swarm, registry, _, client = parts
    swarm.add_service("plain", {"com.df.notify": "false"})
    response = send(client, "GET", "/v1/swarm-listener/notify-create?serviceName=plain")
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")
    assert not registry.clients and not swarm.writes


@pytest.mark.parametrize(
    "query", ["", "?distribute=true", "?serviceName=", "?serviceName=" + "x" * 300]
)
def test_a_request_without_a_usable_service_name_is_400(parts, query):
    *_, client = parts
    response = send(client, "GET", f"/v1/swarm-listener/notify-create{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "name", ["..%2F..%2Finfo", "../../info", "a/b", "-x", ".hidden", "x" * 64, "a%3Fb", "a%00"]
)
@pytest.mark.parametrize("kind", ["create", "remove"])
def test_a_name_docker_would_not_accept_is_400_and_reaches_nothing(parts, kind, name):
    swarm, registry, _, client = parts
    swarm.fail = registry.fail = AssertionError  # neither may even be read
    response = send(client, "GET", f"/v1/swarm-listener/notify-{kind}?serviceName={name}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "Docker service name" in response.json()["error_description"]


def test_an_unexpected_error_is_a_json_500(parts):
    swarm, *_, client = parts
    swarm.fail = RuntimeError  # the readiness check only expects the port's errors
    response = client.get("/readyz")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": "server_error", "error_description": "internal error"}


def test_an_unexpected_error_reading_the_service_is_a_failed_outcome(parts):
    swarm, _, _, client = parts
    swarm.fail = KeyError
    response = send(client, "GET", "/v1/swarm-listener/notify-remove?serviceName=orders")
    assert (response.status_code, response.json()["outcome"]) == (200, "failed")


def test_a_transient_failure_is_503_so_swarm_listener_retries(parts):
    swarm, registry, _, client = parts
    swarm.add_service("orders", LABELS)
    registry.fail = TransientError
    response = send(client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


def test_a_permanent_failure_is_200_with_its_outcome(parts):
    swarm, registry, _, client = parts
    swarm.add_service("orders", LABELS)
    registry.fail = Rejected
    response = send(client, "GET", "/v1/swarm-listener/notify-create?serviceName=orders")
    assert (response.status_code, response.json()["outcome"]) == (200, "failed")


def test_wrong_methods_and_paths_get_the_error_shape(parts):
    *_, client = parts
    assert client.put("/v1/swarm-listener/notify-create?serviceName=x").json()["error"] == (
        "method_not_allowed"
    )
    assert client.get("/v1/nope").json()["error"] == "not_found"
    assert client.get("/v1/reconcile").status_code == 405


def test_a_forced_full_pass_reports_outcomes(parts):
    swarm, *_, client = parts
    swarm.add_service("a", LABELS)
    swarm.add_service("b", LABELS)
    swarm.add_service("plain", {})
    response = client.post("/v1/reconcile")
    assert response.status_code == 200
    assert response.json() == {"outcomes": {"changed": 2}}
    assert client.post("/v1/reconcile").json() == {"outcomes": {"unchanged": 2}}
    swarm.fail = TransientError
    assert client.post("/v1/reconcile").status_code == 503


def test_health_and_readiness(parts):
    swarm, registry, _, client = parts
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    registry.fail = TransientError
    response = client.get("/readyz")
    assert response.status_code == 503 and "clients API" in response.json()["reason"]
    registry.fail, swarm.fail = None, TransientError
    response = client.get("/readyz")
    assert response.status_code == 503 and "docker" in response.json()["reason"]


def test_metrics_count_reconciles_actions_and_passes(parts):
    swarm, _, _, client = parts
    swarm.add_service("orders", LABELS)
    client.post("/v1/reconcile")
    client.post("/v1/reconcile")
    text = client.get("/metrics").text
    assert 'swarm_oauth_registrar_reconciles_total{outcome="changed"} 1.0' in text
    assert 'swarm_oauth_registrar_reconciles_total{outcome="unchanged"} 1.0' in text
    assert 'swarm_oauth_registrar_actions_total{kind="add_client",outcome="ok"} 1.0' in text
    assert 'swarm_oauth_registrar_actions_total{kind="update_service",outcome="ok"} 1.0' in text
    assert "swarm_oauth_registrar_managed_services 1.0" in text
    assert "swarm_oauth_registrar_last_full_pass_timestamp_seconds 0.0" not in text
