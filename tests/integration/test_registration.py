"""Dynamic client registration (RFC 7591) and management (RFC 7592) over real HTTP, on a
server process with SQLite and with PostgreSQL."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.deadlines import refused_within
from tests.support.server import ServerProcess

JSON_TYPE = {"Content-Type": "application/json"}

BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def server(request: pytest.FixtureRequest, server_factory: Any) -> ServerProcess:
    """The all role on the embedded SQLite, or on a fresh PostgreSQL database."""
    env = {}
    if request.param == "postgresql":
        env["SWARM_OAUTH_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return server_factory(env=env)  # type: ignore[no-any-return]


def register(server: ServerProcess, **metadata: Any) -> dict[str, Any]:
    """POST /api/register with the admin token; the 201 body."""
    with server.admin() as admin:
        response = admin.post("/api/register", json=metadata)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    return dict(response.json())


def configure(
    method: str,
    registered: dict[str, Any],
    token: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """A request to the client's configuration endpoint with ``token`` (default: its own)."""
    bearer = registered["registration_access_token"] if token is None else token
    return httpx.request(
        method,
        registered["registration_client_uri"],
        headers={"Authorization": f"Bearer {bearer}", **(headers or {})},
        timeout=10,
        **kwargs,
    )


def basic_token(server: ServerProcess, client_id: str, secret: str, **form: str) -> httpx.Response:
    """POST /api/token with client_secret_basic."""
    return httpx.post(
        f"{server.url}/api/token",
        data={"grant_type": "client_credentials", **form},
        auth=(client_id, secret),
        timeout=10,
    )


def test_register_get_a_token_read_replace_delete(server: ServerProcess) -> None:
    registered = register(
        server,
        client_name="orders",
        scope="read write",
        contacts=["ops@example.com"],
        software_id="swarm-oauth-test",
        jwks_uri="https://ignored.example/jwks",
    )
    client_id, secret = registered["client_id"], registered["client_secret"]
    assert client_id.startswith("dcr-")
    assert registered["registration_client_uri"] == f"{server.url}/api/register/{client_id}"
    assert registered["client_secret_expires_at"] == 0
    assert isinstance(registered["client_id_issued_at"], int)
    assert registered["grant_types"] == ["client_credentials"]
    assert registered["token_endpoint_auth_method"] == "client_secret_basic"
    assert (registered["scope"], registered["client_name"]) == ("read write", "orders")
    assert registered["contacts"] == ["ops@example.com"]
    assert "jwks_uri" not in registered  # not understood, so ignored (RFC 7591 §2)
    assert basic_token(server, client_id, secret, scope="read").json()["scope"] == "read"

    read = configure("GET", registered)
    assert read.status_code == 200 and read.headers["cache-control"] == "no-store"
    shown = read.json()
    assert "client_secret" not in shown
    assert shown == {k: v for k, v in registered.items() if k != "client_secret"}

    replaced = configure(
        "PUT",
        registered,
        json={"client_id": client_id, "client_name": "orders-v2", "scope": "read admin"},
    )
    assert replaced.status_code == 200, replaced.text
    body = replaced.json()
    assert (body["scope"], body["client_name"]) == ("read admin", "orders-v2")
    # Full replacement: what the update left out is gone.
    assert "contacts" not in body and "software_id" not in body
    assert body["registration_access_token"] == registered["registration_access_token"]
    assert configure("GET", registered).json() == body
    # The secret is kept; the new scope is granted, the dropped one refused.
    assert basic_token(server, client_id, secret, scope="admin").status_code == 200
    dropped = basic_token(server, client_id, secret, scope="write")
    assert dropped.status_code == 400 and dropped.json()["error"] == "invalid_scope"

    deleted = configure("DELETE", registered)
    assert deleted.status_code == 204 and deleted.content == b""
    assert configure("GET", registered).status_code == 401
    assert configure("DELETE", registered).status_code == 401
    refused = basic_token(server, client_id, secret)
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
    with server.admin() as admin:
        assert admin.get(f"/api/clients/{client_id}").status_code == 404


def test_only_the_clients_own_registration_access_token_opens_it(server: ServerProcess) -> None:
    mine, other = register(server, scope="read"), register(server)
    made_by_admin = server.add_client("by-admin")
    by_admin = {
        "registration_client_uri": f"{server.url}/api/register/by-admin",
        "registration_access_token": server.admin_token,
    }
    unknown = {**mine, "registration_client_uri": f"{server.url}/api/register/dcr-nobody"}
    malformed = {**mine, "registration_client_uri": f"{server.url}/api/register/a%20b"}
    attempts = [
        (mine, "wrong"),
        (mine, server.admin_token),  # the initial access token is not a registration one
        (mine, other["registration_access_token"]),
        (mine, mine["client_secret"]),
        (unknown, None),
        (malformed, None),
        (by_admin, None),  # admin-made clients have no registration access token
    ]
    for target, token in attempts:
        for method, body in (
            ("GET", None),
            ("PUT", {"client_id": mine["client_id"]}),
            ("DELETE", None),
        ):
            response = configure(method, target, token, json=body)
            assert response.status_code == 401, (method, target, token, response.text)
            assert response.json()["error"] == "invalid_token"
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
    anonymous = httpx.get(mine["registration_client_uri"], timeout=10)
    assert anonymous.status_code == 401
    assert "error=" not in anonymous.headers["www-authenticate"]  # RFC 6750 §3.1
    # Nothing changed: both clients still work and read back as before.
    assert configure("GET", mine).json()["scope"] == "read"
    assert configure("GET", other).status_code == 200
    assert server.token("by-admin", made_by_admin["client_secret"]).status_code == 200


def test_registering_needs_the_initial_access_token(server: ServerProcess) -> None:
    for authorization in (None, "Bearer wrong", "Basic YTpi", "Bearer"):
        headers = {} if authorization is None else {"Authorization": authorization}
        response = httpx.post(f"{server.url}/api/register", json={}, headers=headers, timeout=10)
        assert response.status_code == 401, authorization
        assert response.json()["error"] == "invalid_token"
        assert response.headers["www-authenticate"].startswith("Bearer")
    with server.admin() as admin:
        assert admin.get("/api/clients").json()["clients"] == []


def test_an_update_names_the_client_and_may_prove_its_current_secret(
    server: ServerProcess,
) -> None:
    registered = register(server, scope="read", client_name="orders")
    client_id, secret = registered["client_id"], registered["client_secret"]
    refusals = [
        ({"scope": "read"}, "invalid_client_metadata", "client_id"),
        ({"client_id": "dcr-other"}, "invalid_client_metadata", "client_id"),
        ({"client_id": client_id, "client_secret": "guess"}, "invalid_client_metadata", "secret"),
        ({"client_id": client_id, "client_secret": 7}, "invalid_client_metadata", "secret"),
        # A lone surrogate, which UTF-8 cannot encode: sent as the JSON escape below.
        ({"client_id": client_id, "client_secret": "\ud800"}, "invalid_client_metadata", "secret"),
        (
            {"client_id": client_id, "registration_access_token": "x"},
            "invalid_request",
            "registration_access_token",
        ),
        ({"client_id": client_id, "client_id_issued_at": 1}, "invalid_request", "issued_at"),
        ({"client_id": client_id, "grant_types": ["implicit"]}, "invalid_client_metadata", "grant"),
    ]
    for body, error, reason in refusals:
        content = json.dumps(body)  # ASCII, escapes included: httpx would encode "\ud800"
        response = configure("PUT", registered, content=content, headers=JSON_TYPE)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == error
        assert reason in response.json()["error_description"]
    assert configure("GET", registered).json()["client_name"] == "orders"  # unchanged

    with_secret = configure(
        "PUT",
        registered,
        json={
            "client_id": client_id,
            "client_secret": secret,
            "token_endpoint_auth_method": "client_secret_post",
        },
    )
    assert with_secret.status_code == 200, with_secret.text
    body = with_secret.json()
    assert body["token_endpoint_auth_method"] == "client_secret_post"
    assert "scope" not in body and "client_name" not in body  # reset to the defaults
    assert "client_secret" not in body
    assert server.token(client_id, secret).status_code == 200  # the secret is the same


def test_the_registration_access_token_and_secret_stay_out_of_the_admin_api_and_logs(
    server: ServerProcess,
) -> None:
    registered = register(server, client_name="orders")
    token, secret = registered["registration_access_token"], registered["client_secret"]
    configure("GET", registered)
    with server.admin() as admin:
        texts = [
            admin.get(f"/api/clients/{registered['client_id']}").text,
            admin.get("/api/clients").text,
        ]
    shown = httpx.get(
        f"{server.url}/api/clients/{registered['client_id']}",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    ).json()
    assert shown["metadata"]["client_name"] == "orders"
    server.stop()  # its log writer has written every line by the time it exits
    texts.append(server.log())
    for text in texts:
        assert token not in text and secret not in text
        assert "sha256$" not in text and "registration_token" not in text


def test_registered_in_the_clients_role_served_and_deleted_in_the_tokens_role(
    server_factory: Any, tmp_path: Path
) -> None:
    data = tmp_path / "shared"
    clients = server_factory(data_dir=data, role="clients")
    tokens = server_factory(data_dir=data, role="tokens")
    registered = register(clients, scope="read")
    client_id, secret = registered["client_id"], registered["client_secret"]
    assert registered["registration_client_uri"] == f"{clients.url}/api/register/{client_id}"
    assert basic_token(tokens, client_id, secret).status_code == 200
    assert configure("DELETE", registered).status_code == 204
    deleted_at = time.monotonic()
    refused_within(
        lambda: basic_token(tokens, client_id, secret).status_code == 200,
        deleted_at,
        1.0,
        "tokens still issued a second after DELETE",
    )
    assert basic_token(tokens, client_id, secret).json()["error"] == "invalid_client"
