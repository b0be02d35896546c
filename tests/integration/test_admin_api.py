"""The clients API: add, show, list, rotate, remove, and everything it must refuse."""

import time
from datetime import UTC, datetime

import httpx
import pytest

from swarm_oauth.admin_client import AdminClient


def clients_of(server):
    with server.admin() as admin:
        return admin.get("/api/clients").json()["clients"]


def test_add_returns_the_secret_once_and_never_again(token_server):
    body = token_server.add_client(
        "orders", scopes=["read"], audiences=["inventory"], metadata={"service_id": "abc"}
    )
    secret = body["client_secret"]
    assert len(secret) >= 43
    assert body["scopes"] == ["read"] and body["audiences"] == ["inventory"]
    assert body["secret_version"] == 1 and body["created_at"].endswith("Z")
    with token_server.admin() as admin:
        shown = admin.get("/api/clients/orders")
        listed = admin.get("/api/clients")
    assert shown.status_code == 200
    assert shown.json()["metadata"] == {"service_id": "abc"}
    for text in (shown.text, listed.text):
        assert secret not in text
        assert "client_secret" not in text and "hash" not in text
    assert secret not in (token_server.data_dir / "swarm-oauth.db").read_bytes().decode("latin-1")


def test_rotate_with_grace(token_server):
    """The old secret works for the grace, rounded up to the whole second the record
    names, and not a moment past it."""
    old = token_server.add_client("orders")["client_secret"]
    asked = time.time()
    with token_server.admin() as admin:
        rotated = admin.post(
            "/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 10}
        )
    answered = time.time()
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["secret_version"] == 2 and new["client_secret"] != old
    ends = datetime.strptime(new["previous_secret_expires_at"], "%Y-%m-%dT%H:%M:%SZ")
    ends_at = ends.replace(tzinfo=UTC).timestamp()
    assert asked + 10 <= ends_at < answered + 11
    assert token_server.token("orders", new["client_secret"]).status_code == 200
    assert token_server.token("orders", old).status_code == 200  # still within grace
    time.sleep(max(0.0, ends_at - 0.5 - time.time()))
    assert token_server.token("orders", old).status_code == 200  # its last moments
    time.sleep(max(0.0, ends_at + 0.05 - time.time()))
    assert token_server.token("orders", old).status_code == 401
    assert token_server.token("orders", new["client_secret"]).status_code == 200


def test_rotate_without_grace_stops_the_old_secret_at_once(token_server):
    old = token_server.add_client("orders")["client_secret"]
    with token_server.admin() as admin:
        new = admin.post("/api/clients/rotate", json={"client_id": "orders"}).json()
    assert token_server.token("orders", old).status_code == 401
    assert token_server.token("orders", new["client_secret"]).status_code == 200


def test_duplicate_add_is_409_and_keeps_the_first(token_server):
    first = token_server.add_client("orders", scopes=["a"])["client_secret"]
    with token_server.admin() as admin:
        again = admin.post("/api/clients/add", json={"client_id": "orders", "scopes": ["b"]})
    assert again.status_code == 409
    assert again.json()["error"] == "conflict"
    assert token_server.token("orders", first).json()["scope"] == "a"


def test_remove_unknown_is_404(token_server):
    with token_server.admin() as admin:
        response = admin.post("/api/clients/remove", json={"client_id": "ghost"})
        shown = admin.get("/api/clients/ghost")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert shown.status_code == 404


BAD_ADMIN_REQUESTS = [
    # (headers, path, content, expected status, words in the reason)
    ({"Content-Type": "application/json"}, "/api/clients/add", b"{not json", 400, "JSON"),
    ({"Content-Type": "application/json"}, "/api/clients/add", b"[1]", 400, "object"),
    ({"Content-Type": "application/json"}, "/api/clients/add", b"{}", 400, "client_id"),
    ({"Content-Type": "text/plain"}, "/api/clients/add", b'{"client_id":"x"}', 415, "Content-Type"),
    ({}, "/api/clients/add", b'{"client_id":"x"}', 415, "Content-Type"),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        '{"client_id":"é"}'.encode(),
        400,
        "client_id",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"a b"}',
        400,
        "client_id",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"' + b"x" * 129 + b'"}',
        400,
        "client_id",
    ),
    ({"Content-Type": "application/json"}, "/api/clients/add", b'{"client_id":7}', 400, "string"),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","scopes":"read"}',
        400,
        "scopes",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","scopes":["has space"]}',
        400,
        "scopes",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","metadata":[]}',
        400,
        "metadata",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","scope":["a"]}',
        400,
        "unknown",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"' + b"x" * 70000 + b'"}',
        413,
        "exceeds",
    ),
    ({"Content-Type": "application/json"}, "/api/clients/add", b"\xff\xfe", 400, "JSON"),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","metadata":{"a":NaN}}',
        400,
        "metadata",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","metadata":{"a":1e999}}',
        400,
        "metadata",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","metadata":{"a":"\\ud800"}}',
        400,
        "metadata",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b'{"client_id":"x","metadata":{"a":"\\u0000"}}',
        400,
        "metadata",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/update",
        b'{"client_id":"x","metadata":{"a":NaN}}',
        400,
        "metadata",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/add",
        b"[" * 30000 + b"]" * 30000,
        400,
        "nested",
    ),
    (
        # json.loads would read UTF-16 bytes; RFC 8259 §8.1 asks for UTF-8.
        {"Content-Type": "application/json"},
        "/api/clients/add",
        '{"client_id":"utf16"}'.encode("utf-16"),
        400,
        "not valid JSON",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/rotate",
        b'{"client_id":"x","grace_seconds":-1}',
        400,
        "grace_seconds",
    ),
    (
        {"Content-Type": "application/json"},
        "/api/clients/rotate",
        b'{"client_id":"x","grace_seconds":"10"}',
        400,
        "grace_seconds",
    ),
]


@pytest.mark.parametrize(("headers", "path", "content", "status", "reason"), BAD_ADMIN_REQUESTS)
def test_bad_admin_requests_get_a_reason_and_change_nothing(
    token_server, headers, path, content, status, reason
):
    token_server.add_client("x")
    before = clients_of(token_server)
    with token_server.admin() as admin:
        response = admin.post(path, content=content, headers=headers)
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert reason.lower() in body["error_description"].lower()
    assert clients_of(token_server) == before  # listing still works, nothing changed


def test_a_json_body_may_start_with_a_byte_order_mark(token_server):
    # RFC 8259 §8.1: a parser may ignore it; UTF-16 is refused (BAD_ADMIN_REQUESTS).
    with token_server.admin() as admin:
        added = admin.post(
            "/api/clients/add",
            content='\ufeff{"client_id":"bom"}'.encode(),
            headers={"Content-Type": "application/json"},
        )
    assert added.status_code == 201, added.text
    assert "bom" in [c["client_id"] for c in clients_of(token_server)]


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer wrong", "Basic abc", "bearer x"]
)
def test_admin_token_is_required(token_server, authorization):
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path in [("GET", "/api/clients"), ("POST", "/api/clients/add")]:
        response = httpx.request(
            method, token_server.url + path, headers=headers, json={"client_id": "sneaky"}
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["error"] == "unauthorized"
    assert clients_of(token_server) == []


def test_unknown_paths_and_methods_are_json_errors(token_server):
    missing = httpx.get(token_server.url + "/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = httpx.delete(token_server.url + "/api/clients")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_update_changes_grants_but_not_the_secret(token_server):
    secret = token_server.add_client("orders", scopes=["read"])["client_secret"]
    assert token_server.token("orders", secret, scope="write").status_code == 400
    with token_server.admin() as admin:
        updated = admin.post(
            "/api/clients/update",
            json={"client_id": "orders", "scopes": ["read", "write"], "audiences": ["inv"]},
        )
        missing = admin.post("/api/clients/update", json={"client_id": "ghost", "scopes": []})
        bad = admin.post("/api/clients/update", json={"client_id": "orders", "scopes": "x"})
    assert updated.status_code == 200
    body = updated.json()
    assert (body["scopes"], body["audiences"], body["secret_version"]) == (
        ["read", "write"],
        ["inv"],
        1,
    )
    assert "client_secret" not in body
    # The same process sees the change on the very next request, not a poll later.
    granted = token_server.token("orders", secret, scope="write", audience="inv")
    assert granted.status_code == 200 and granted.json()["scope"] == "write"
    assert missing.status_code == 404
    assert bad.status_code == 400


def test_changes_made_here_apply_to_the_next_request_of_this_process(token_server):
    old = token_server.add_client("orders")["client_secret"]
    assert token_server.token("orders", old).status_code == 200  # now cached
    with token_server.admin() as admin:
        admin.post("/api/clients/rotate", json={"client_id": "orders"})
    assert token_server.token("orders", old).status_code == 401
    with token_server.admin() as admin:
        admin.post("/api/clients/remove", json={"client_id": "orders"})
    assert token_server.token("orders", old).status_code == 401


def test_the_admin_client_revokes_a_clients_tokens(token_server):
    secret = token_server.add_client("orders")["client_secret"]
    issued = token_server.token("orders", secret).json()["access_token"]
    with AdminClient(token_server.url, token_server.admin_token) as api:
        answer = api.revoke_tokens("orders")
        assert answer is not None and answer["client_id"] == "orders"
        assert api.revoke_tokens("ghost") is None
    refused = httpx.get(
        f"{token_server.url}/api/verify", headers={"Authorization": f"Bearer {issued}"}
    )
    assert refused.status_code == 401
