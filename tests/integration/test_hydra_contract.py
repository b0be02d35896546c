"""The registrar's Hydra backend against Ory Hydra's published API contract.

No Hydra binary can be installed here, so Stoplight Prism serves Hydra's OpenAPI document
(tests/contracts/hydra-openapi.json) as a mock that validates every request: a request
that breaks the contract comes back with the violations in ``sl-violations``. Every call
the backend makes is checked that way, and every response shape the contract documents
(the examples of 2xx and error responses) must parse. This proves the contract, not the
behaviour of a live Hydra.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any, ClassVar

import httpx
import pytest

from swarm_oauth.registrar.hydra_api import HOLDS_ROTATED, HydraAdmin
from swarm_oauth.registrar.model import ClientInfo, ObservedService, client_metadata
from swarm_oauth.registrar.ports import Rejected, TransientError
from swarm_oauth.registrar.reconcile import Outcome
from tests.support.fakes import FakeSwarm
from tests.support.registrar import InProcessRegistrar


class Sent:
    """Records every exchange with the mock, and the contract violations it reported."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []
        self.violations: list[Any] = []

    def __call__(self, response: httpx.Response) -> None:
        request = response.request
        self.calls.append((request.method, request.url.path, response.status_code))
        reported = json.loads(response.headers.get("sl-violations", "[]"))
        self.violations += [v for v in reported if v["location"][0] == "request"]


@pytest.fixture
def sent() -> Sent:
    return Sent()


def hydra(url: str, sent: Sent, prefer: str | None = None) -> HydraAdmin:
    headers = {"Prefer": prefer} if prefer else {}
    return HydraAdmin(url, headers=headers, event_hooks={"response": [sent]})


METADATA = client_metadata(ObservedService("svc-id", "shop_orders", {}), "0123abcd")


def test_every_request_of_the_backend_follows_the_contract(hydra_mock, sent):
    admin = hydra(hydra_mock, sent)
    fresh = admin.add("shop_orders", ["read", "orders:write"], ["inventory"], METADATA)
    assert fresh.secret and fresh.client.client_id  # the documented example parses
    assert isinstance(admin.get("shop_orders"), ClientInfo)
    assert admin.find("shop_orders", "svc-id") is not None
    assert isinstance(admin.list(), list)
    assert isinstance(admin.update("shop_orders", ["read"], []), ClientInfo)
    assert admin.rotate("shop_orders", 600).secret
    # Retiring rotated secrets: the contract's example client carries no flag, so give the
    # backend one that does, as a rotation would have left it.
    flagged = ClientInfo("shop_orders", 2, {**METADATA, HOLDS_ROTATED: True})
    admin.get = lambda client_id: flagged  # type: ignore[method-assign]
    assert admin.retire_previous("shop_orders") is True
    assert admin.remove("shop_orders") is True
    admin.ping()
    assert sent.violations == []
    methods = {(method, path) for method, path, _ in sent.calls}
    assert methods >= {
        ("POST", "/admin/clients"),
        ("GET", "/admin/clients/shop_orders"),
        ("GET", "/admin/clients"),
        ("PATCH", "/admin/clients/shop_orders"),
        ("POST", "/admin/clients/shop_orders/secrets/rotate"),
        ("DELETE", "/admin/clients/shop_orders/secrets/rotate"),
        ("DELETE", "/admin/clients/shop_orders"),
    }


def test_the_reconcile_registers_a_service_through_the_contract(hydra_mock, sent):
    # The mock knows no client: a lookup of one answers the contract's 404, so the
    # reconcile registers the service; every other answer is the contract's example.
    def no_client_yet(request: httpx.Request) -> None:
        if request.method == "GET" and request.url.path.startswith("/admin/clients/"):
            request.headers["Prefer"] = "code=404"

    admin = HydraAdmin(hydra_mock, event_hooks={"request": [no_client_yet], "response": [sent]})
    swarm = FakeSwarm()
    registrar = InProcessRegistrar(swarm, admin)
    try:
        swarm.add_service("orders")
        assert registrar.hint("orders") is Outcome.CHANGED
    finally:
        registrar.close()
    [secret] = swarm.managed_secrets()
    assert swarm.data(secret.id)  # the example's client_secret, handed to the service
    assert ("POST", "/admin/clients", 201) in sent.calls
    assert sent.violations == []


def test_the_documented_error_responses_parse(hydra_mock, sent):
    missing = hydra(hydra_mock, sent, "code=404")
    assert missing.get("shop_orders") is None
    with pytest.raises(TransientError, match="removed by someone else"):
        missing.update("shop_orders", ["read"], [])
    refusing = hydra(hydra_mock, sent, "code=400")
    with pytest.raises(Rejected) as refused:
        refusing.add("shop_orders", ["read"], [], METADATA)
    assert "400" in str(refused.value)
    assert sent.violations == []


class _Paged(BaseHTTPRequestHandler):
    """Hydra's paging as documented: ``Link: <...?page_token=...>; rel="next"``."""

    pages: ClassVar[dict[str, tuple[list[dict[str, Any]], str | None]]] = {}
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        query = httpx.URL(self.path).params
        self.seen.append(str(query))
        items, following = self.pages[query.get("page_token", "")]
        body = json.dumps(items).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if following:
            self.send_header(
                "Link", f'</admin/clients?page_size=500&page_token={following}>; rel="next"'
            )
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def paged() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Paged)
    Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_client_list_is_followed_page_by_page_and_filtered_by_metadata(paged):
    ours = {"metadata": METADATA, "scope": "read", "audience": ["inventory"]}
    _Paged.pages = {
        "": ([{"client_id": "a", **ours}, {"client_id": "theirs", "metadata": {}}], "t2"),
        "t2": ([{"client_id": "b", **ours}], "t3"),
        "t3": ([], None),
    }
    _Paged.seen = []
    clients = HydraAdmin(paged).list()
    assert [c.client_id for c in clients] == ["a", "b"]
    assert clients[0].scopes == ("read",) and clients[0].audiences == ("inventory",)
    assert all("owner=swarm-oauth-registrar" in q for q in _Paged.seen)
    assert ["page_token=t2" in q for q in _Paged.seen] == [False, True, False]


NOT_FOUND = {"error": {"code": 404, "message": "Not Found"}}  # Hydra's genericError


class _OldHydra(BaseHTTPRequestHandler):
    """A Hydra from before secret rotation: clients, but no ``.../secrets/rotate``."""

    clients: ClassVar[dict[str, dict[str, Any]]] = {}

    def _answer(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _client(self) -> str | None:
        parts = httpx.URL(self.path).path.split("/")
        return parts[3] if len(parts) == 4 and parts[3] in self.clients else None

    def do_GET(self) -> None:
        client = self._client()
        if client is None:
            self._answer(404, NOT_FOUND)
        else:
            self._answer(200, self.clients[client])

    def do_PATCH(self) -> None:
        client = self._client()
        length = int(self.headers["Content-Length"])
        if client is None:
            self._answer(404, NOT_FOUND)
            return
        for operation in json.loads(self.rfile.read(length)):
            assert operation["op"] == "add" and operation["path"].count("/") == 1
            self.clients[client][operation["path"][1:]] = operation["value"]
        self._answer(200, self.clients[client])

    def do_PUT(self) -> None:  # Hydra's: the client becomes the payload, nothing kept
        client = self._client()
        length = int(self.headers["Content-Length"])
        if client is None:
            self._answer(404, NOT_FOUND)
            return
        self.clients[client] = json.loads(self.rfile.read(length))
        self._answer(200, self.clients[client])

    def do_POST(self) -> None:  # only .../secrets/rotate comes here: no such route
        self._answer(404, NOT_FOUND)

    do_DELETE = do_POST

    def log_message(self, *_: Any) -> None:
        pass


@contextlib.contextmanager
def _admin_of(handler: type[BaseHTTPRequestHandler]) -> Iterator[HydraAdmin]:
    """The backend on a stub server answering with ``handler``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    Thread(target=server.serve_forever, daemon=True).start()
    admin = HydraAdmin(f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield admin
    finally:
        admin.close()
        server.shutdown()


def test_a_hydra_without_secret_rotation_is_told_plainly_and_its_client_left_as_it_was():
    _OldHydra.clients = {
        "shop_orders": {
            "client_id": "shop_orders",
            "scope": "read",
            "audience": [],
            "metadata": {**METADATA, "secret_version": 1},
        }
    }
    with _admin_of(_OldHydra) as admin:
        for _ in range(3):  # not "removed by someone else", retried for ever
            with pytest.raises(Rejected, match="needs a Hydra with secret rotation"):
                admin.rotate("shop_orders", 600)
        client = admin.get("shop_orders")
        assert client is not None and client.secret_version == 1
        assert HOLDS_ROTATED not in client.metadata
        # Nor is a retirement reported done that the server never made.
        _OldHydra.clients["shop_orders"]["metadata"][HOLDS_ROTATED] = True
        with pytest.raises(Rejected, match="secret rotation"):
            admin.retire_previous("shop_orders")


class _RacingHydra(_OldHydra):
    """A Hydra whose client is deleted by someone else just as the registrar retires its
    rotated-out secrets: the retirement's 404 is the client gone, not the route."""

    def do_DELETE(self) -> None:
        self.clients.clear()
        self._answer(404, NOT_FOUND)


def test_a_client_deleted_during_its_retirement_is_retried_not_taken_for_an_old_hydra():
    _RacingHydra.clients = {
        "shop_orders": {
            "client_id": "shop_orders",
            "metadata": {**METADATA, "secret_version": 2, HOLDS_ROTATED: True},
        }
    }
    with (
        _admin_of(_RacingHydra) as admin,
        pytest.raises(TransientError, match="removed by someone else"),
    ):
        admin.retire_previous("shop_orders")


def _proxy_answering(body: bytes, **headers: str) -> type[BaseHTTPRequestHandler]:
    """A proxy in front of the admin API that answers every GET with ``body`` and
    ``headers`` (underscores in their names as dashes)."""

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return Proxy


def test_a_page_instead_of_the_client_list_is_a_refusal_not_a_crash():
    login_page = _proxy_answering(b"<html><body>Sign in</body></html>", Content_Type="text/html")
    with _admin_of(login_page) as admin, pytest.raises(Rejected, match="not a list"):
        admin.list()


def test_a_body_that_cannot_be_decoded_is_retried_not_a_crash():
    # httpx raises DecodingError, not a TransportError, while it reads such a body.
    broken_gzip = _proxy_answering(
        b"this is not gzip", Content_Type="application/json", Content_Encoding="gzip"
    )
    with _admin_of(broken_gzip) as admin, pytest.raises(TransientError, match="DecodingError"):
        admin.get("shop_orders")


def test_a_scope_change_keeps_what_an_operator_set_on_the_client():
    _OldHydra.clients = {
        "shop_orders": {
            "client_id": "shop_orders",
            "scope": "read",
            "audience": [],
            "metadata": {**METADATA, "secret_version": 1},
            "client_credentials_grant_access_token_lifespan": "5m0s",
            "access_token_strategy": "opaque",
        }
    }
    with _admin_of(_OldHydra) as admin:
        updated = admin.update("shop_orders", ["read", "write"], ["inventory"])
        assert updated.scopes == ("read", "write") and updated.audiences == ("inventory",)
        stored = _OldHydra.clients["shop_orders"]
        assert stored["client_credentials_grant_access_token_lifespan"] == "5m0s"
        assert stored["access_token_strategy"] == "opaque"
        # What the registrar defines is set all the same.
        assert stored["grant_types"] == ["client_credentials"] and stored["owner"]
