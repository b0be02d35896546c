"""The registrar's clients API adapter against a real token server (and a broken one)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from swarm_oauth.registrar.clients_api import ClientsAPI
from swarm_oauth.registrar.ports import Rejected, TransientError
from tests.support.server import free_port


def test_the_adapter_speaks_the_clients_api(token_server):
    api = ClientsAPI(token_server.url, token_server.admin_token)
    api.ping()
    issued = api.add("orders", ["read"], ["billing"], {"managed_by": "x", "service_id": "s1"})
    assert issued.secret not in repr(issued) and issued.secret not in str(issued)
    assert token_server.token("orders", issued.secret).status_code == 200
    client = api.get("orders")
    assert client is not None
    assert (client.secret_version, client.scopes, client.audiences) == (1, ("read",), ("billing",))
    assert client.metadata == {"managed_by": "x", "service_id": "s1"}
    assert [c.client_id for c in api.list()] == ["orders"]

    rotated = api.rotate("orders")
    assert rotated.client.secret_version == 2
    # No grace: the old secret stops at once in the process that rotated it.
    assert token_server.token("orders", issued.secret).status_code == 401
    assert token_server.token("orders", rotated.secret).status_code == 200

    updated = api.update("orders", ["read", "write"], [])
    assert (updated.scopes, updated.audiences, updated.secret_version) == (
        ("read", "write"),
        (),
        2,
    )
    assert token_server.token("orders", rotated.secret, scope="write").status_code == 200

    with pytest.raises(TransientError, match="added by someone else"):
        api.add("orders", [], [], {})
    assert api.remove("orders") is True
    assert api.remove("orders") is False  # already gone counts as done
    assert api.get("orders") is None
    with pytest.raises(TransientError, match="removed by someone else"):
        api.rotate("orders")
    with pytest.raises(TransientError, match="removed by someone else"):
        api.update("orders", [], [])
    api.close()


def test_a_wrong_admin_token_is_rejected_not_retried(token_server):
    api = ClientsAPI(token_server.url, "not-the-token")
    with pytest.raises(Rejected, match="401"):
        api.ping()
    with pytest.raises(Rejected, match="401"):
        api.add("orders", [], [], {})
    api.close()


def test_an_unreachable_api_is_transient():
    api = ClientsAPI(f"http://127.0.0.1:{free_port()}", "token", timeout=2)
    with pytest.raises(TransientError, match="ConnectError"):
        api.get("orders")
    api.close()


class _Overloaded(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"error": "temporarily_unavailable", "error_description": "store down"}'
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def overloaded() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Overloaded)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_5xx_is_transient_with_the_apis_reason(overloaded):
    api = ClientsAPI(overloaded, "token")
    with pytest.raises(TransientError, match="503 store down"):
        api.get("orders")
    api.close()
