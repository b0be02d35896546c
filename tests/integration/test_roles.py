"""A clients process and a tokens process sharing one data dir, as in the stack."""

import time

import httpx
import pytest

from tests.support.deadlines import refused_within


@pytest.fixture
def pair(server_factory, tmp_path):
    data = tmp_path / "shared"
    clients = server_factory(data_dir=data, role="clients")
    tokens = server_factory(data_dir=data, role="tokens")
    return clients, tokens


def test_added_in_one_served_by_the_other_and_removal_within_a_second(pair):
    clients, tokens = pair
    secret = clients.add_client("orders")["client_secret"]
    assert tokens.token("orders", secret).status_code == 200
    with clients.admin() as admin:
        assert admin.post("/api/clients/remove", json={"client_id": "orders"}).status_code == 200
    removed_at = time.monotonic()
    refused_within(
        lambda: tokens.token("orders", secret).status_code == 200,
        removed_at,
        1.0,
        "tokens still issued a second after removal",
    )
    refused = tokens.token("orders", secret)
    assert refused.status_code == 401
    assert refused.json()["error"] == "invalid_client"


def test_rotation_in_clients_reaches_tokens_within_a_second(pair):
    clients, tokens = pair
    old = clients.add_client("orders")["client_secret"]
    assert tokens.token("orders", old).status_code == 200
    with clients.admin() as admin:
        new = admin.post("/api/clients/rotate", json={"client_id": "orders"}).json()
    rotated_at = time.monotonic()
    refused_within(
        lambda: tokens.token("orders", old).status_code == 200,
        rotated_at,
        1.0,
        "the old secret still worked a second after rotation",
    )
    assert tokens.token("orders", new["client_secret"]).status_code == 200


def test_tokens_role_does_not_route_admin_paths(pair):
    clients, tokens = pair
    headers = {"Authorization": f"Bearer {clients.admin_token}"}
    for method, path in [
        ("GET", "/api/clients"),
        ("POST", "/api/clients/add"),
        ("POST", "/api/clients/remove"),
        ("POST", "/api/clients/rotate"),
        ("GET", "/api/clients/orders"),
    ]:
        response = httpx.request(
            method, tokens.url + path, headers=headers, json={"client_id": "x"}
        )
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"
    paths = httpx.get(tokens.url + "/openapi.json").json()["paths"]
    assert "/api/token" in paths
    assert not any(p.startswith("/api/clients") for p in paths)


def test_clients_role_does_not_issue_tokens(pair):
    clients, _ = pair
    secret = clients.add_client("orders")["client_secret"]
    assert clients.token("orders", secret).status_code == 404
    paths = httpx.get(clients.url + "/openapi.json").json()["paths"]
    assert "/api/clients/add" in paths and "/api/token" not in paths


def test_restart_keeps_clients_keys_and_admin_token(token_server):
    secret = token_server.add_client("orders")["client_secret"]
    admin_token = token_server.admin_token
    issued = token_server.token("orders", secret).json()["access_token"]
    jwks_before = httpx.get(token_server.url + "/.well-known/jwks.json").json()
    token_server.restart()
    assert token_server.admin_token == admin_token
    assert httpx.get(token_server.url + "/.well-known/jwks.json").json() == jwks_before
    assert token_server.token("orders", secret).status_code == 200
    import jwt

    key = jwt.PyJWKClient(f"{token_server.url}/.well-known/jwks.json").get_signing_key_from_jwt(
        issued
    )
    assert jwt.decode(issued, key.key, algorithms=["ES256"], audience=token_server.url)["sub"] == (
        "orders"
    )


def test_the_clients_role_never_holds_signing_keys(server_factory, tmp_path):
    data = tmp_path / "admin-only"
    server_factory(data_dir=data, role="clients")
    assert not (data / "master.key").exists()
    assert (data / "admin-token").exists()


def test_metadata_lists_the_algorithms_of_the_published_keys(token_server):
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "swarm_oauth", "keys", "rotate", "--data-dir",
         str(token_server.data_dir), "--alg", "EdDSA"],
        check=True, capture_output=True,
    )  # fmt: skip
    url = token_server.url + "/.well-known/oauth-authorization-server"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        algs = httpx.get(url).json()["id_token_signing_alg_values_supported"]
        if "EdDSA" in algs:
            break
        time.sleep(0.05)
    assert algs == ["ES256", "EdDSA"]
