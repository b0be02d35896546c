"""The RFC 7591/7592 handlers in this process, on a real SQLite store: every metadata
refusal, the defaults, the URLs given out per role, and where the endpoints are listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from swarm_oauth.clients.service import MAX_METADATA_BYTES
from tests.support.inprocess import ISSUER, InProcessServer

REFUSED = [
    # (metadata, error, words in the reason)
    ({"grant_types": ["authorization_code"]}, "invalid_client_metadata", "grant_types"),
    (
        {"grant_types": ["client_credentials", "refresh_token"]},
        "invalid_client_metadata",
        "grant_types",
    ),
    ({"grant_types": []}, "invalid_client_metadata", "grant_types"),
    ({"grant_types": "client_credentials"}, "invalid_client_metadata", "array"),
    ({"grant_types": [1]}, "invalid_client_metadata", "array"),
    ({"response_types": ["code"]}, "invalid_client_metadata", "response_types"),
    ({"response_types": "code"}, "invalid_client_metadata", "response_types"),
    ({"redirect_uris": ["https://app.example/cb"]}, "invalid_redirect_uri", "redirect_uris"),
    ({"redirect_uris": "https://app.example/cb"}, "invalid_redirect_uri", "array"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata", "auth_method"),
    ({"token_endpoint_auth_method": "none"}, "invalid_client_metadata", "auth_method"),
    ({"token_endpoint_auth_method": 1}, "invalid_client_metadata", "auth_method"),
    ({"scope": ["read"]}, "invalid_client_metadata", "scope"),
    ({"scope": "read  write"}, "invalid_client_metadata", "scope"),
    ({"scope": 'say"hi'}, "invalid_client_metadata", "scope"),
    ({"scope": " ".join(f"s{n}" for n in range(101))}, "invalid_client_metadata", "at most"),
    ({"client_name": 5}, "invalid_client_metadata", "client_name"),
    ({"logo_uri": {"href": "x"}}, "invalid_client_metadata", "logo_uri"),
    ({"software_version": True}, "invalid_client_metadata", "software_version"),
    ({"contacts": "ops@example.com"}, "invalid_client_metadata", "contacts"),
    ({"contacts": ["ops@example.com", None]}, "invalid_client_metadata", "contacts"),
    ({"client_name": "x" * MAX_METADATA_BYTES}, "invalid_client_metadata", "bytes"),
    ({"client_name": "nul\u0000"}, "invalid_client_metadata", "NUL"),
]


@pytest.mark.parametrize(("metadata", "error", "reason"), REFUSED)
def test_refused_metadata_gets_the_rfc_7591_error_and_registers_nothing(
    inprocess: InProcessServer, metadata: dict[str, Any], error: str, reason: str
) -> None:
    response = inprocess.admin("POST", "/api/register", json=metadata)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error", "error_description"}
    assert response.json()["error"] == error
    assert reason.lower() in response.json()["error_description"].lower()
    assert inprocess.admin("GET", "/api/clients").json()["clients"] == []


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 400),
        (b"[]", {"Content-Type": "application/json"}, 400),
        (b'"client"', {"Content-Type": "application/json"}, 400),
        (b"{}", {"Content-Type": "text/plain"}, 415),
        (b'{"client_name":"' + b"x" * 70_000 + b'"}', {"Content-Type": "application/json"}, 413),
    ],
)
def test_bodies_that_are_no_json_object_are_refused(
    inprocess: InProcessServer, content: bytes, headers: dict[str, str], status: int
) -> None:
    response = inprocess.admin("POST", "/api/register", content=content, headers=headers)
    assert response.status_code == status
    assert set(response.json()) == {"error", "error_description"}
    assert inprocess.admin("GET", "/api/clients").json()["clients"] == []


def test_defaults_and_what_is_ignored(inprocess: InProcessServer) -> None:
    ignored = {
        "client_id": "chosen",
        "client_secret": "chosen-secret",
        "jwks": {"keys": []},
        "software_statement": "eyJ.e30.x",
        "client_name#fr": "commandes",
        "audiences": ["elsewhere"],
    }
    explicit_nulls = {"grant_types": None, "scope": None, "redirect_uris": [], "contacts": []}
    response = inprocess.admin("POST", "/api/register", json={**ignored, **explicit_nulls})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"] != "chosen" and body["client_secret"] != "chosen-secret"
    assert set(body) == {
        "client_id",
        "client_secret",
        "client_id_issued_at",
        "client_secret_expires_at",
        "registration_access_token",
        "registration_client_uri",
        "grant_types",
        "response_types",
        "token_endpoint_auth_method",
    }
    assert (body["grant_types"], body["response_types"]) == (["client_credentials"], [])
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert len(body["registration_access_token"]) >= 43  # 256 bits, base64url
    record = inprocess.admin("GET", f"/api/clients/{body['client_id']}").json()
    assert (record["scopes"], record["audiences"]) == ([], [])


def test_client_secret_post_is_accepted_and_shown(inprocess: InProcessServer) -> None:
    response = inprocess.admin(
        "POST", "/api/register", json={"token_endpoint_auth_method": "client_secret_post"}
    )
    body = response.json()
    assert body["token_endpoint_auth_method"] == "client_secret_post"
    token = inprocess.request(
        "POST",
        "/api/token",
        data={
            "grant_type": "client_credentials",
            "client_id": body["client_id"],
            "client_secret": body["client_secret"],
        },
    )
    assert token.status_code == 200, token.text


def test_the_all_role_gives_out_urls_under_its_issuer(inprocess: InProcessServer) -> None:
    # However this request reached the process, callers are to use the public URL.
    response = inprocess.admin("POST", "http://10.0.0.7:8080/api/register", json={})
    uri = response.json()["registration_client_uri"]
    assert uri == f"{ISSUER}/api/register/{response.json()['client_id']}"
    metadata = inprocess.request("GET", "/.well-known/oauth-authorization-server").json()
    assert metadata["registration_endpoint"] == f"{ISSUER}/api/register"
    openid = inprocess.request("GET", "/.well-known/openid-configuration").json()
    assert openid["registration_endpoint"] == f"{ISSUER}/api/register"


def test_the_clients_role_gives_out_the_url_it_was_reached_by(tmp_path: Path) -> None:
    server = InProcessServer(tmp_path / "data", role="clients")
    try:
        response = server.admin("POST", "http://oauth-clients:8081/api/register", json={})
        body = response.json()
        expected = f"http://oauth-clients:8081/api/register/{body['client_id']}"
        assert body["registration_client_uri"] == expected
        read = server.request(
            "GET",
            expected,
            headers={"Authorization": f"Bearer {body['registration_access_token']}"},
        )
        assert read.status_code == 200 and read.json()["registration_client_uri"] == expected
        paths = server.request("GET", "/openapi.json").json()["paths"]
        assert {"/api/register", "/api/register/{client_id}"} <= set(paths)
        assert set(paths["/api/register/{client_id}"]) == {"get", "put", "delete"}
    finally:
        server.close()


def test_the_tokens_role_neither_serves_nor_advertises_registration(tmp_path: Path) -> None:
    server = InProcessServer(tmp_path / "data", role="tokens")
    try:
        assert server.request("POST", "/api/register", json={}).status_code == 404
        assert server.request("GET", "/api/register/dcr-x").status_code == 404
        metadata = server.request("GET", "/.well-known/oauth-authorization-server").json()
        assert "registration_endpoint" not in metadata
        paths = server.request("GET", "/openapi.json").json()["paths"]
        assert not any(path.startswith("/api/register") for path in paths)
    finally:
        server.close()


def test_a_wrong_token_is_refused_before_the_body_is_looked_at(
    inprocess: InProcessServer,
) -> None:
    client_id = inprocess.admin("POST", "/api/register", json={}).json()["client_id"]
    response = inprocess.request(
        "PUT",
        f"/api/register/{client_id}",
        content=b"{not json",
        headers={"Authorization": "Bearer wrong", "Content-Type": "text/plain"},
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
