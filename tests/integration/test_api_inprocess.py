"""The token server's handlers in this process (httpx's ASGI transport), on a real SQLite
store: the admin API's bodies as one table declares them, and the token endpoint."""

from __future__ import annotations

import jwt
import pytest

from swarm_oauth.api.admin_bodies import ADD, ROTATE, UPDATE
from swarm_oauth.identifiers import MAX_GRACE_SECONDS
from tests.support.inprocess import ISSUER, InProcessServer


def test_a_client_added_through_the_handler_gets_a_token(inprocess):
    added = inprocess.admin(
        "POST", "/api/clients/add", json={"client_id": "orders", "scopes": ["read"]}
    )
    assert added.status_code == 201 and added.headers["cache-control"] == "no-store"
    secret = added.json()["client_secret"]
    response = inprocess.request(
        "POST",
        "/api/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("orders", secret),
    )
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["sub"], claims["scope"], claims["iss"]) == ("orders", "read", ISSUER)


def test_update_rotate_remove_through_the_handlers(inprocess):
    inprocess.admin("POST", "/api/clients/add", json={"client_id": "orders"})
    updated = inprocess.admin(
        "POST", "/api/clients/update", json={"client_id": "orders", "audiences": ["inventory"]}
    )
    assert updated.status_code == 200 and updated.json()["audiences"] == ["inventory"]
    assert "client_secret" not in updated.json()
    rotated = inprocess.admin(
        "POST", "/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 5}
    )
    assert rotated.status_code == 200 and rotated.json()["secret_version"] == 2
    assert rotated.headers["cache-control"] == "no-store"
    removed = inprocess.admin("POST", "/api/clients/remove", json={"client_id": "orders"})
    assert removed.json() == {"client_id": "orders", "removed": True}
    assert inprocess.admin("GET", "/api/clients/orders").status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/api/clients/add", {"client_id": "a", "secret": "x"}, 400, "unknown field(s): secret"),
        ("/api/clients/add", {"scopes": []}, 400, "missing field(s): client_id"),
        ("/api/clients/rotate", {"client_id": "a", "scopes": []}, 400, "unknown field(s)"),
        (
            "/api/clients/rotate",
            {"client_id": "a", "grace_seconds": MAX_GRACE_SECONDS + 1},
            400,
            f"between 0 and {MAX_GRACE_SECONDS}",
        ),
        ("/api/clients/update", {"client_id": "no spaces"}, 400, "client_id must be"),
        ("/api/clients/remove", {"client_id": "ghost"}, 404, "no client"),
    ],
)
def test_bodies_are_checked_against_their_declaration(inprocess, path, body, status, reason):
    response = inprocess.admin("POST", path, json=body)
    assert response.status_code == status
    assert reason in response.json()["error_description"]


def test_the_openapi_bodies_come_from_the_same_table(inprocess):
    paths = inprocess.request("GET", "/openapi.json").json()["paths"]

    def schema(path: str) -> dict:
        return paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]

    for path, body in (
        ("/api/clients/add", ADD),
        ("/api/clients/update", UPDATE),
        ("/api/clients/rotate", ROTATE),
    ):
        declared = schema(path)
        assert set(declared["properties"]) == set(body.fields)
        assert declared["required"] == ["client_id"] and not declared["additionalProperties"]
    grace = schema("/api/clients/rotate")["properties"]["grace_seconds"]
    assert grace["maximum"] == MAX_GRACE_SECONDS


def test_the_admin_token_is_required(inprocess):
    response = inprocess.request("GET", "/api/clients")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    wrong = inprocess.request("GET", "/api/clients", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"


def test_the_tokens_role_routes_no_admin_path(tmp_path):
    server = InProcessServer(tmp_path / "data", role="tokens")
    try:
        response = server.request("GET", "/api/clients")
        assert response.status_code == 404 and response.json()["error"] == "not_found"
        assert "/api/clients/add" not in server.request("GET", "/openapi.json").json()["paths"]
    finally:
        server.close()


def test_replacing_the_current_secret_keeps_the_previous_one_in_its_grace(inprocess):
    def token_status(secret: str) -> int:
        return inprocess.request(
            "POST",
            "/api/token",
            data={"grant_type": "client_credentials"},
            auth=("orders", secret),
        ).status_code

    first = inprocess.admin("POST", "/api/clients/add", json={"client_id": "orders"}).json()
    second = inprocess.admin(
        "POST", "/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 600}
    ).json()
    # The holder of the second secret lost it before handing it out: replace just that one.
    third = inprocess.admin(
        "POST", "/api/clients/rotate", json={"client_id": "orders", "replace_current": True}
    ).json()
    assert third["secret_version"] == 3
    assert third["previous_secret_expires_at"] == second["previous_secret_expires_at"]
    assert token_status(first["client_secret"]) == 200  # the tasks' secret, in its grace
    assert token_status(second["client_secret"]) == 401
    assert token_status(third["client_secret"]) == 200
    bad = inprocess.admin(
        "POST", "/api/clients/rotate", json={"client_id": "orders", "replace_current": "yes"}
    )
    assert bad.status_code == 400 and "replace_current" in bad.json()["error_description"]


def test_a_path_with_a_trailing_slash_is_404_not_a_redirect_built_from_the_host(inprocess):
    # A 307 to http://<Host>/api/clients/add would be followed with the body in hand.
    answer = inprocess.admin(
        "POST", "/api/clients/add/", json={"client_id": "orders"}, headers={"Host": "evil.test"}
    )
    assert answer.status_code == 404, answer.headers
    assert "location" not in answer.headers
    assert inprocess.admin("GET", "/api/clients/orders").status_code == 404
