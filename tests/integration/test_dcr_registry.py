"""The ``dcr`` backend against a real RFC 7591/7592 server (panva's oidc-provider): the
registry on its own, then the reconcile driving it. The Docker side is the in-memory
swarm here; tests/swarm/test_registrar_dcr.py runs the same against the real engine."""

from __future__ import annotations

import json
import secrets
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import jwt
import pytest
import trustme

from swarm_oauth.registrar.dcr_api import DynamicRegistration
from swarm_oauth.registrar.model import FreshSecret
from swarm_oauth.registrar.ports import Rejected, TransientError
from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.registrations import REGISTRATION, RegistrationBook
from swarm_oauth.registrar.sealing import Sealer
from tests.support.fakes import FakeSwarm
from tests.support.node_tools import OidcProvider, oidc_provider
from tests.support.registrar import InProcessRegistrar

METADATA = {"managed_by": "swarm-oauth-registrar", "service_id": "svc1", "service_name": "web"}


@pytest.fixture(scope="module")
def oidc(node_tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with oidc_provider(node_tools, tmp_path_factory.mktemp("oidc")) as provider:
        yield provider


@pytest.fixture
def swarm() -> FakeSwarm:
    return FakeSwarm()


@pytest.fixture
def sealer() -> Sealer:
    return Sealer(secrets.token_bytes(32))


@pytest.fixture
def registry(oidc: OidcProvider, swarm: FakeSwarm, sealer: Sealer) -> Iterator[DynamicRegistration]:
    book = RegistrationBook(swarm, sealer)
    opened = DynamicRegistration(
        oidc.registration_url, book, initial_access_token=oidc.initial_access_token
    )
    yield opened
    opened.close()


def token(oidc: OidcProvider, client_id: str, secret: str, scope: str = "") -> httpx.Response:
    form = {"grant_type": "client_credentials", **({"scope": scope} if scope else {})}
    return httpx.post(f"{oidc.local}/token", data=form, auth=(client_id, secret), timeout=10)


def claims(oidc: OidcProvider, response: httpx.Response) -> dict[str, Any]:
    """The access token's claims, verified with the server's JWKS."""
    assert response.status_code == 200, response.text
    access_token = response.json()["access_token"]
    key = jwt.PyJWKClient(oidc.jwks_url).get_signing_key_from_jwt(access_token).key
    return dict(jwt.decode(access_token, key, algorithms=["ES256"], audience=oidc.audience))


def test_a_registered_client_gets_tokens_and_is_found_again(oidc, registry, swarm):
    fresh = registry.add("web", ["read"], [], METADATA)
    assert fresh.client.client_id != "web"  # the server chose it
    assert fresh.client.name == "web" and fresh.client.managed
    assert claims(oidc, token(oidc, fresh.client.client_id, fresh.secret, "read"))["client_id"] == (
        fresh.client.client_id
    )
    found = registry.find("web", "svc1")
    assert found is not None
    assert (found.client_id, found.scopes, found.secret_version) == (
        fresh.client.client_id,
        ("read",),
        1,
    )
    assert registry.find("web", "another-service") is None
    assert [c.client_id for c in registry.list()] == [fresh.client.client_id]


def test_the_record_keeps_the_registration_access_token_sealed(registry, swarm, sealer):
    fresh = registry.add("web", [], [], METADATA)
    [config] = swarm.list_configs(REGISTRATION)
    shown = json.dumps(config.labels)
    assert fresh.secret not in shown
    record = RegistrationBook(swarm, sealer).get(fresh.client.client_id)
    assert record is not None
    credentials = RegistrationBook(swarm, sealer).credentials(record)
    assert credentials.access_token not in shown
    guess = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    assert httpx.get(credentials.client_uri, headers=guess, timeout=10).status_code == 401

    stranger = DynamicRegistration("http://127.0.0.1:9", RegistrationBook(swarm, Sealer(b"k" * 32)))
    with pytest.raises(Rejected, match=r"cannot be read: .*another key, or tampered"):
        stranger.get(fresh.client.client_id)


def test_an_update_changes_the_scopes_and_keeps_the_secret(oidc, registry):
    fresh = registry.add("web", ["read"], [], METADATA)
    client_id = fresh.client.client_id
    # oidc-provider issues a new registration access token at every update: the record
    # must follow, or the second update (and the removal) would be refused.
    for scopes in (["read", "write"], ["write"]):
        updated = registry.update(client_id, scopes, [])
        assert updated.scopes == tuple(scopes)
    assert claims(oidc, token(oidc, client_id, fresh.secret, "write"))["scope"] == "write"
    assert token(oidc, client_id, fresh.secret, "read").json()["error"] == "invalid_scope"
    assert registry.remove(client_id) is True


def test_the_last_scope_is_not_taken_away_by_an_update_that_would_grant_all(oidc, registry):
    fresh = registry.add("web", ["read"], [], METADATA)
    client_id = fresh.client.client_id
    with pytest.raises(Rejected, match="cannot take every scope away"):
        registry.update(client_id, [], [])
    # An update without `scope` would have let this client ask oidc-provider for any.
    assert token(oidc, client_id, fresh.secret, "write").json()["error"] == "invalid_scope"
    assert claims(oidc, token(oidc, client_id, fresh.secret, "read"))["scope"] == "read"
    found = registry.get(client_id)
    assert found is not None and found.scopes == ("read",)
    assert registry.remove(client_id) is True


def test_rotation_registers_anew_and_the_old_client_lasts_until_retired(oidc, registry):
    first = registry.add("web", [], [], METADATA)
    second = registry.rotate(first.client.client_id, 3600)
    # oidc-provider keeps a client's secret through an update, so the backend registered
    # the service again.
    assert second.client.client_id != first.client.client_id
    assert second.client.secret_version == 2
    assert second.client.previous_secret_expires_at is not None
    found = registry.find("web", "svc1")
    assert found is not None and found.client_id == second.client.client_id
    assert token(oidc, first.client.client_id, first.secret).status_code == 200

    assert registry.retire_previous(second.client.client_id) is True
    assert token(oidc, first.client.client_id, first.secret).json()["error"] == "invalid_client"
    assert token(oidc, second.client.client_id, second.secret).status_code == 200
    assert registry.retire_previous(second.client.client_id) is False
    assert [c.client_id for c in registry.list()] == [second.client.client_id]


def test_replacing_a_lost_current_secret_removes_that_client_at_once(oidc, registry):
    first = registry.add("web", [], [], METADATA)
    second = registry.rotate(first.client.client_id, 3600, replace_current=True)
    assert token(oidc, first.client.client_id, first.secret).json()["error"] == "invalid_client"
    assert registry.find("web", "svc1").client_id == second.client.client_id


def test_a_client_deleted_at_the_server_is_forgotten(registry, swarm, sealer):
    fresh = registry.add("web", [], [], METADATA)
    book = RegistrationBook(swarm, sealer)
    credentials = book.credentials(book.get(fresh.client.client_id))
    bearer = {"Authorization": f"Bearer {credentials.access_token}"}
    assert httpx.delete(credentials.client_uri, headers=bearer, timeout=10).status_code == 204
    assert registry.find("web", "svc1") is None
    assert swarm.list_configs(REGISTRATION) == []
    assert registry.remove(fresh.client.client_id) is False


def test_removal_deletes_the_client_and_its_record(oidc, registry, swarm, sealer):
    fresh = registry.add("web", [], [], METADATA)
    book = RegistrationBook(swarm, sealer)
    credentials = book.credentials(book.get(fresh.client.client_id))
    assert registry.remove(fresh.client.client_id) is True
    bearer = {"Authorization": f"Bearer {credentials.access_token}"}
    # RFC 7592 §2.1: the configuration endpoint answers 401 for a client it does not have.
    assert httpx.get(credentials.client_uri, headers=bearer, timeout=10).status_code == 401
    assert token(oidc, fresh.client.client_id, fresh.secret).json()["error"] == "invalid_client"
    assert swarm.list_configs(REGISTRATION) == []


def test_the_reconcile_gives_a_service_the_client_the_server_chose(oidc, registry, swarm, caplog):
    registrar = InProcessRegistrar(swarm, registry, token_url=oidc.token_url)
    try:
        service = swarm.add_service("web")
        assert registrar.hint("web") is Outcome.CHANGED
        client = registry.find("web", service.id)
        assert client is not None
        env = swarm.named("web").env
        assert f"OAUTH_CLIENT_ID={client.client_id}" in env
        assert f"OAUTH_TOKEN_URL={oidc.token_url}" in env
        [secret] = swarm.managed_secrets()
        assert secret.labels["swarm-oauth.client-id"] == client.client_id
        given = swarm.data(secret.id).decode()
        assert token(oidc, client.client_id, given).status_code == 200
        assert registrar.hint("web") is Outcome.UNCHANGED

        with caplog.at_level("INFO", logger="swarm_oauth.registrar"):
            registrar.controller.rotate(swarm.named("web"), 3600).result(30)
            registrar.drain()
        assert any(
            r.getMessage().endswith("the old secret works until no task uses it")
            for r in caplog.records
        )
        rotated = registry.find("web", service.id)
        assert rotated is not None and rotated.client_id != client.client_id
        assert f"OAUTH_CLIENT_ID={rotated.client_id}" in swarm.named("web").env
        # No task holds the old secret (the in-memory swarm has none): the old client went.
        assert token(oidc, client.client_id, given).json()["error"] == "invalid_client"
        [secret] = swarm.managed_secrets()
        assert token(oidc, rotated.client_id, swarm.data(secret.id).decode()).status_code == 200

        del swarm.services[service.id]
        assert registrar.hint(service.id) is not Outcome.FAILED
        assert registry.list() == [] and swarm.managed_secrets() == []
        # No id to hold for the service's name: the server picks them.
        assert registrar.reconciler.reservations() == []
    finally:
        registrar.close()


def test_the_reconcile_refuses_audiences_it_cannot_record(registry, swarm):
    registrar = InProcessRegistrar(swarm, registry)
    try:
        swarm.add_service("api", {"swarm-oauth.client": "true", "swarm-oauth.audience": "billing"})
        assert registrar.hint("api") is Outcome.REFUSED
        status = registrar.board.get(swarm.named("api").id)
        assert status is not None and "cannot record audiences" in status.reason
        assert registry.list() == []
    finally:
        registrar.close()


def _serve(
    handler: type[BaseHTTPRequestHandler],
    swarm,
    sealer,
    ca: trustme.CA | None = None,
    **options: Any,
):
    """A stub server on 127.0.0.1 (https with a certificate of ``ca``), and the registry
    (with ``options``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    client: dict[str, Any] = dict(options)
    if ca is not None:
        served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(served)
        server.socket = served.wrap_socket(server.socket, server_side=True)
        client["verify"] = trusting = ssl.create_default_context()
        ca.configure_trust(trusting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"{'https' if ca else 'http'}://127.0.0.1:{server.server_address[1]}/reg"
    return server, DynamicRegistration(url, RegistrationBook(swarm, sealer), **client)


class _RenewingServer(BaseHTTPRequestHandler):
    """An RFC 7592 server that issues a new secret at every update, as the RFC allows and
    oidc-provider does not: the path where a rotation keeps the client id."""

    clients: ClassVar[dict[str, dict[str, Any]]] = {}
    # How it writes a client's configuration URL (RFC 7592 §3).
    client_uri: ClassVar[str] = "http://{host}/reg/{client_id}"

    def _send(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _issue(self, client_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        host = self.headers["Host"]
        body = {
            **metadata,
            "client_id": client_id,
            "client_secret": secrets.token_urlsafe(16),
            "registration_access_token": secrets.token_urlsafe(16),
            "registration_client_uri": self.client_uri.format(host=host, client_id=client_id),
        }
        self.clients[client_id] = body
        return body

    def do_POST(self) -> None:
        metadata = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(201, self._issue(secrets.token_hex(4), metadata))

    def do_PUT(self) -> None:
        client_id = self.path.rsplit("/", 1)[-1]
        known = self.clients.get(client_id)
        if known is None or self.headers["Authorization"] != (
            f"Bearer {known['registration_access_token']}"
        ):
            self._send(401, {"error": "invalid_token"})
            return
        metadata = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._send(200, self._issue(client_id, metadata))

    def log_message(self, *args: Any) -> None:
        pass


def test_rotation_takes_a_new_secret_when_the_update_issues_one(swarm, sealer):
    server, registry = _serve(_RenewingServer, swarm, sealer)
    try:
        first = registry.add("web", ["read"], [], METADATA)
        second: FreshSecret = registry.rotate(first.client.client_id)
        assert second.client.client_id == first.client.client_id
        assert second.secret != first.secret
        assert second.secret == _RenewingServer.clients[first.client.client_id]["client_secret"]
        assert second.client.secret_version == 2
        # The new registration access token was recorded: a further update is accepted.
        assert registry.update(first.client.client_id, ["write"], []).scopes == ("write",)
    finally:
        registry.close()
        server.shutdown()


class _SpendingServer(_RenewingServer):
    """An RFC 7592 server whose registration access token is good for one use, each
    answer carrying the next (Keycloak's default); ``forbidden`` clients answer 403."""

    forbidden: ClassVar[set[str]] = set()

    def _known(self) -> dict[str, Any] | None:
        client_id = self.path.rsplit("/", 1)[-1]
        known = self.clients.get(client_id)
        if known is None or self.headers["Authorization"] != (
            f"Bearer {known['registration_access_token']}"
        ):
            self._send(401, {"error": "invalid_token"})
            return None
        if client_id in self.forbidden:
            self._send(403, {"error": "insufficient_scope"})
            return None
        known["registration_access_token"] = secrets.token_urlsafe(16)
        return known

    def do_GET(self) -> None:
        if (known := self._known()) is not None:
            self._send(200, known)

    def do_DELETE(self) -> None:
        if (known := self._known()) is not None:
            del self.clients[known["client_id"]]
            self._send(204)


def test_a_rotation_says_when_the_server_could_not_keep_the_old_secret(swarm, sealer, caplog):
    # An update that issues a new secret ends the old one at the server: the grace the
    # registrar was asked for cannot be kept, and its log must not promise it.
    _SpendingServer.clients = {}
    server, registry = _serve(_SpendingServer, swarm, sealer)
    registrar = InProcessRegistrar(swarm, registry)
    try:
        swarm.add_service("web")
        assert registrar.hint("web") is Outcome.CHANGED
        [client_id] = _SpendingServer.clients
        with caplog.at_level("INFO", logger="swarm_oauth.registrar"):
            registrar.controller.rotate(swarm.named("web"), 3600).result(30)
            registrar.drain()
        [rotation] = [r.getMessage() for r in caplog.records if "rotated client" in r.getMessage()]
        assert rotation.endswith(
            "the old secret works no longer: its server keeps no previous secret, so the "
            "1h grace asked for could not be kept"
        ), rotation
        assert list(_SpendingServer.clients) == [client_id]  # the same client, a new secret
    finally:
        registrar.close()
        registry.close()
        server.shutdown()


class _ExpiringServer(_SpendingServer):
    """A server that ends each client secret ``lifetime`` seconds after issuing it, by its
    ``clock`` (RFC 7591 ``client_secret_expires_at``; 0 for never)."""

    lifetime: ClassVar[int] = 3 * 86400
    clock: ClassVar[list[float]] = [1_000_000.0]

    def _issue(self, client_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        body = super()._issue(client_id, metadata)
        body["client_secret_expires_at"] = (
            int(self.clock[0]) + self.lifetime if self.lifetime else 0
        )
        return body


def test_a_secret_the_server_ends_is_rotated_before_it_ends(swarm, sealer):
    _ExpiringServer.clients, _ExpiringServer.lifetime = {}, 3 * 86400
    now = _ExpiringServer.clock = [1_000_000.0]
    swarm.clock = lambda: now[0]
    server, registry = _serve(_ExpiringServer, swarm, sealer)
    registrar = InProcessRegistrar(swarm, registry, clock=lambda: now[0])
    try:
        service = swarm.add_service("web")
        assert registrar.hint("web") is Outcome.CHANGED
        [client_id] = _ExpiringServer.clients
        found = registry.find("web", service.id)
        assert found is not None and found.secret_expires_at == 1_000_000 + 3 * 86400
        first = _ExpiringServer.clients[client_id]["client_secret"]
        now[0] += 2 * 86400 - 60
        assert registrar.full_pass() == {Outcome.UNCHANGED: 1}
        now[0] += 60  # a third of its life left
        assert registrar.full_pass() == {Outcome.CHANGED: 1}
        given = _ExpiringServer.clients[client_id]["client_secret"]
        assert given != first
        [secret] = swarm.managed_secrets()
        assert swarm.data(secret.id).decode() == given
        # A server that ends no secret (0) says nothing the registrar acts on.
        _ExpiringServer.lifetime = 0
        assert registry.rotate(client_id).client.secret_expires_at is None
    finally:
        registrar.close()
        registry.close()
        server.shutdown()


@pytest.fixture
def spending(swarm, sealer) -> Iterator[DynamicRegistration]:
    server, registry = _serve(_SpendingServer, swarm, sealer)
    yield registry
    registry.close()
    server.shutdown()


def test_a_registration_token_renewed_by_a_read_is_recorded(spending):
    client_id = spending.add("web", ["read"], [], METADATA).client.client_id
    # Each read spends the token and answers with the next: were it not recorded, the
    # second read would look like a client gone, and the service would be registered anew.
    for _ in range(3):
        found = spending.get(client_id)
        assert found is not None and found.client_id == client_id
    assert spending.update(client_id, ["write"], []).scopes == ("write",)
    assert spending.remove(client_id) is True
    assert client_id not in _SpendingServer.clients


def test_a_403_from_the_configuration_endpoint_keeps_the_record(spending):
    client_id = spending.add("web", ["read"], [], METADATA).client.client_id
    _SpendingServer.forbidden.add(client_id)
    try:
        with pytest.raises(Rejected, match="403"):
            spending.get(client_id)
    finally:
        _SpendingServer.forbidden.discard(client_id)
    assert spending.get(client_id) is not None  # not forgotten: still managed


class _OtherMethodServer(_SpendingServer):
    """A server whose policy registers every client for private_key_jwt, without a
    secret (a Keycloak client policy can)."""

    def do_POST(self) -> None:
        metadata = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        body = self._issue(secrets.token_hex(4), metadata)
        del body["client_secret"]
        body["token_endpoint_auth_method"] = "private_key_jwt"
        self._send(201, body)


class _ProxiedServer(_SpendingServer):
    """A server behind a proxy that, for a while, answers 404 pages of its own."""

    proxy_down: ClassVar[bool] = False

    def do_GET(self) -> None:
        if not self.proxy_down:
            super().do_GET()
            return
        page = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


def test_a_client_registered_without_a_usable_secret_is_deleted_again(swarm, sealer):
    _OtherMethodServer.clients = {}
    server, registry = _serve(_OtherMethodServer, swarm, sealer)
    try:
        for _ in range(3):  # each pass would have left one more client at the server
            with pytest.raises(Rejected, match="without a client secret") as refused:
                registry.add("web", ["read"], [], METADATA)
            assert "private_key_jwt" in str(refused.value)
        assert _OtherMethodServer.clients == {}
        assert registry.list() == []
    finally:
        registry.close()
        server.shutdown()


def test_a_proxys_404_page_is_not_taken_for_a_client_gone(swarm, sealer):
    _ProxiedServer.clients = {}
    server, registry = _serve(_ProxiedServer, swarm, sealer)
    try:
        client_id = registry.add("web", ["read"], [], METADATA).client.client_id
        _ProxiedServer.proxy_down = True
        with pytest.raises(TransientError, match="404 as a web page"):
            registry.get(client_id)
        _ProxiedServer.proxy_down = False
        # Still managed: the record (and so the client's token) kept, nothing registered.
        found = registry.get(client_id)
        assert found is not None and found.client_id == client_id
        assert list(_ProxiedServer.clients) == [client_id]
    finally:
        _ProxiedServer.proxy_down = False
        registry.close()
        server.shutdown()


class _RelativeServer(_SpendingServer):
    """A server that answers a registration with a relative configuration URL."""

    client_uri = "/reg/{client_id}"


def test_a_configuration_url_that_is_not_a_full_url_is_refused(swarm, sealer):
    _RelativeServer.clients = {}
    server, registry = _serve(_RelativeServer, swarm, sealer)
    try:
        with pytest.raises(Rejected, match="not a fully qualified") as refused:
            registry.add("web", ["read"], [], METADATA)
        assert "delete it at the server" in str(refused.value)
        assert registry.list() == []
    finally:
        registry.close()
        server.shutdown()


def test_a_server_whose_registrations_cannot_be_managed_is_not_asked_at_every_pass(swarm, sealer):
    _RelativeServer.clients = {}
    now = [0.0]
    server, registry = _serve(_RelativeServer, swarm, sealer, clock=lambda: now[0])
    try:
        with pytest.raises(Rejected, match="not a fully qualified"):
            registry.add("web", ["read"], [], METADATA)
        # Every try makes a client the registrar can neither use nor delete: the next
        # ones (a full pass a minute, a rotation) wait, saying why and for how long.
        for elapsed in (60.0, 14 * 60.0):
            now[0] = elapsed
            with pytest.raises(Rejected, match="not a fully qualified") as held:
                registry.add("api", ["read"], [], {**METADATA, "service_name": "api"})
            assert "registrations wait" in str(held.value)
        assert len(_RelativeServer.clients) == 1
        now[0] = 15 * 60.0 + 1  # the server may have been fixed meanwhile
        with pytest.raises(Rejected, match="not a fully qualified") as refused:
            registry.add("api", ["read"], [], {**METADATA, "service_name": "api"})
        assert "registrations wait" not in str(refused.value)
        assert len(_RelativeServer.clients) == 2
    finally:
        registry.close()
        server.shutdown()


class _TlsServer(_SpendingServer):
    """A server reached over https, whose configuration URLs a test may turn to http (as
    one behind a TLS proxy that does not tell it writes them)."""

    client_uri = "https://{host}/reg/{client_id}"


def test_a_registration_token_is_never_sent_over_http_when_the_server_is_https(swarm, sealer):
    _TlsServer.clients = {}
    ca = trustme.CA()
    server, registry = _serve(_TlsServer, swarm, sealer, ca)
    try:
        client_id = registry.add("web", ["read"], [], METADATA).client.client_id
        # A later answer that moves the URL to http: refused, the https one kept, and the
        # renewed registration token recorded all the same (the old one is spent).
        configured = _TlsServer.clients[client_id]
        configured["registration_client_uri"] = configured["registration_client_uri"].replace(
            "https://", "http://"
        )
        with pytest.raises(Rejected, match="in the clear"):
            registry.get(client_id)
        configured["registration_client_uri"] = configured["registration_client_uri"].replace(
            "http://", "https://"
        )
        found = registry.get(client_id)
        assert found is not None and found.client_id == client_id
        # A registration answered with an http URL: refused, nothing recorded.
        _TlsServer.client_uri = "http://{host}/reg/{client_id}"
        with pytest.raises(Rejected, match="in the clear") as refused:
            registry.add("api", ["read"], [], {**METADATA, "service_name": "api"})
        assert "delete it at the server" in str(refused.value)
        assert [c.client_id for c in registry.list()] == [client_id]
    finally:
        _TlsServer.client_uri = "https://{host}/reg/{client_id}"
        registry.close()
        server.shutdown()


class _ReadRenewingServer(_SpendingServer):
    """A server that, for its next ``reads`` reads, answers with a new secret and ends the
    old one (RFC 7592 §2.1 allows it); every update issues one too. It counts the secrets
    it issues."""

    reads: ClassVar[int] = 0
    issued: ClassVar[int] = 0

    def _issue(self, client_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        type(self).issued += 1
        return super()._issue(client_id, metadata)

    def do_GET(self) -> None:
        if (known := self._known()) is not None:
            if self.reads:
                type(self).reads -= 1
                type(self).issued += 1
                known["client_secret"] = secrets.token_urlsafe(16)
            self._send(200, known)


@pytest.fixture
def renewing(swarm, sealer) -> Iterator[DynamicRegistration]:
    _ReadRenewingServer.clients, _ReadRenewingServer.reads = {}, 0
    _ReadRenewingServer.issued = 0
    server, registry = _serve(_ReadRenewingServer, swarm, sealer)
    yield registry
    registry.close()
    server.shutdown()


def _mounted(swarm: FakeSwarm) -> str:
    [secret] = swarm.managed_secrets()
    return swarm.data(secret.id).decode()


def test_a_secret_a_read_issues_is_the_one_the_service_gets(renewing, swarm):
    registrar = InProcessRegistrar(swarm, renewing)
    try:
        swarm.add_service("web")
        assert registrar.hint("web") is Outcome.CHANGED
        [client_id] = _ReadRenewingServer.clients
        assert _mounted(swarm) == _ReadRenewingServer.clients[client_id]["client_secret"]
        # The next read ends the mounted secret and answers with another: that one is
        # mounted, by the same pass, and no further secret is asked for.
        _ReadRenewingServer.reads, issued = 1, _ReadRenewingServer.issued
        assert registrar.full_pass() == {Outcome.CHANGED: 1}
        assert list(_ReadRenewingServer.clients) == [client_id]
        assert _mounted(swarm) == _ReadRenewingServer.clients[client_id]["client_secret"]
        assert _ReadRenewingServer.issued == issued + 1
        assert f"OAUTH_CLIENT_ID={client_id}" in swarm.named("web").env
        assert registrar.full_pass() == {Outcome.UNCHANGED: 1}
    finally:
        registrar.close()


def test_a_secret_a_scope_update_issues_is_the_one_the_service_gets(renewing, swarm):
    registrar = InProcessRegistrar(swarm, renewing)
    try:
        labels = {"swarm-oauth.client": "true", "swarm-oauth.scopes": "a"}
        swarm.add_service("web", labels)
        assert registrar.hint("web") is Outcome.CHANGED
        [client_id] = _ReadRenewingServer.clients
        labels = {**labels, "swarm-oauth.scopes": "a b"}
        swarm.set_service(replace(swarm.named("web"), labels=labels))
        issued = _ReadRenewingServer.issued
        assert registrar.hint("web") is Outcome.CHANGED
        configured = _ReadRenewingServer.clients[client_id]
        assert configured["scope"] == "a b"
        assert _mounted(swarm) == configured["client_secret"]
        assert _ReadRenewingServer.issued == issued + 1  # the update's, no rotation after
    finally:
        registrar.close()


def test_a_secret_a_read_issues_survives_a_failed_write_of_its_record(renewing, swarm, sealer):
    client_id = renewing.add("web", ["read"], [], METADATA).client.client_id
    _ReadRenewingServer.reads = 1
    swarm.fail = TransientError
    with pytest.raises(TransientError):
        renewing.get(client_id)  # the answer spent the token and ended the secret
    swarm.fail = None
    found = renewing.get(client_id)
    assert found is not None and found.secret_version == 2
    fresh = renewing.rotate(client_id)
    assert fresh.secret == _ReadRenewingServer.clients[client_id]["client_secret"]
    assert fresh.client.secret_version == 2
    record = RegistrationBook(swarm, sealer).get(client_id)
    assert record is not None and record.secret_version == 2


def test_a_registration_token_whose_record_could_not_be_written_is_kept(spending, swarm):
    client_id = spending.add("web", ["read"], [], METADATA).client.client_id
    create_config = swarm.create_config
    failures = iter([TransientError("no raft leader")])

    def flaky(*args: Any, **kwargs: Any) -> Any:
        if (failure := next(failures, None)) is not None:
            raise failure
        return create_config(*args, **kwargs)

    swarm.create_config = flaky  # type: ignore[method-assign]
    # The read spends the token and answers with the next, which the book cannot store:
    # forgetting it would make the next read a 401, the client orphaned at its server.
    with pytest.raises(TransientError, match="no raft leader"):
        spending.get(client_id)
    for _ in range(2):
        found = spending.get(client_id)
        assert found is not None and found.client_id == client_id
    assert spending.remove(client_id) is True
    assert client_id not in _SpendingServer.clients
    assert swarm.list_configs(REGISTRATION) == []


class _SlowReadServer(_SpendingServer):
    """A spending server whose reads answer only after ``reading`` is set and a pause."""

    reading: ClassVar[threading.Event] = threading.Event()

    def do_GET(self) -> None:
        known = self._known()  # the token is spent on receipt
        self.reading.set()
        threading.Event().wait(0.5)
        if known is not None:
            self._send(200, known)


def test_a_read_and_a_removal_at_once_do_not_orphan_the_client(swarm, sealer):
    # A removed service's key and its client's key on two workers: one reads the client
    # while the other deletes it, both with the one token the server spends at each use.
    _SlowReadServer.clients, _SlowReadServer.reading = {}, threading.Event()
    server, registry = _serve(_SlowReadServer, swarm, sealer)
    try:
        client_id = registry.add("web", ["read"], [], METADATA).client.client_id
        read = threading.Thread(target=registry.get, args=(client_id,))
        read.start()
        assert _SlowReadServer.reading.wait(10)
        assert registry.remove(client_id) is True
        read.join(10)
        assert _SlowReadServer.clients == {}  # deleted, not orphaned behind a spent token
        assert swarm.list_configs(REGISTRATION) == []
    finally:
        registry.close()
        server.shutdown()
