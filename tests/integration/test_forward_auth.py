"""``/api/verify``, the forward-auth endpoint, on the token server's app in this process
(real SQLite): what a proxy sees for each kind of request. The proxies themselves are in
test_forward_auth_proxies.py."""

from __future__ import annotations

import time

import pytest

from swarm_oauth.api.forward_auth import BadQuery, requirements
from swarm_oauth.api.metrics import REGISTRY
from tests.support.inprocess import InProcessServer


@pytest.fixture
def bearer(inprocess) -> str:
    added = inprocess.admin(
        "POST",
        "/api/clients/add",
        json={"client_id": "orders", "scopes": ["read", "write"], "audiences": ["inventory"]},
    )
    response = inprocess.request(
        "POST",
        "/api/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("orders", added.json()["client_secret"]),
    )
    return f"Bearer {response.json()['access_token']}"


def verify(server: InProcessServer, query: str = "", method: str = "GET", **kwargs):
    return server.request(method, f"/api/verify{query}", **kwargs)


def allowed() -> float:
    return (
        REGISTRY.get_sample_value("swarm_oauth_forward_auth_requests_total", {"outcome": "allowed"})
        or 0.0
    )


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
def test_a_valid_token_passes_with_its_identity_whatever_the_method(inprocess, bearer, method):
    before = allowed()
    answer = verify(
        inprocess,
        "?audience=inventory&scope=read",
        method,
        headers={"Authorization": bearer},
        # A proxy may forward the request's body; it is never read.
        content=b"x" * 100_000 if method in ("POST", "PUT", "PATCH") else None,
    )
    assert answer.status_code == 200
    assert answer.headers["x-auth-client-id"] == "orders"
    assert answer.headers["x-auth-scope"] == "read"
    assert answer.headers["x-auth-audience"] == "inventory"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.content == b""
    assert allowed() == before + 1


def test_checks_make_no_store_query(inprocess, bearer):
    # On every request of every protected service: keys and revocations come from the
    # process's caches, which the change watcher keeps true; only it reads the store.
    statements: list[str] = []
    inprocess.runtime.store._reader.set_trace_callback(statements.append)
    cases = [
        ("?audience=inventory&scope=read", bearer, 200),
        ("?scope=write", bearer, 403),
        ("?audience=billing", bearer, 401),
        ("", "Bearer not.a.token", 401),
    ]
    for _ in range(20):
        for query, authorization, status in cases:
            answer = verify(inprocess, query, headers={"Authorization": authorization})
            assert answer.status_code == status, answer.text
    touched = [
        s for s in statements if any(t in s for t in ("clients", "signing_keys", "revocations"))
    ]
    assert touched == []
    # The trace sees what does read the store: an admin read of the client.
    assert inprocess.admin("GET", "/api/clients/orders").status_code == 200
    inprocess.runtime.store._reader.set_trace_callback(None)
    assert any("FROM clients" in s for s in statements)


def test_without_a_token_the_challenge_has_no_error(inprocess):
    for headers in ({}, {"Authorization": "Basic b3JkZXJzOnNlY3JldA=="}):
        refused = verify(inprocess, headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="swarm-oauth"'
        assert refused.json()["error"] == "invalid_token"


@pytest.mark.parametrize(
    ("query", "authorization", "status", "challenge"),
    [
        ("", "Bearer garbage", 401, 'error="invalid_token", error_description="the token is not'),
        ("?audience=billing", None, 401, "not meant for audience billing"),
        ("?scope=read+write", None, 403, 'error="insufficient_scope"'),
        ("?scope=admin%20read", None, 403, 'scope="admin read"'),
        ("", "Bearer ", 401, 'error="invalid_request"'),
    ],
)
def test_refusals_carry_an_rfc_6750_challenge(
    inprocess, bearer, query, authorization, status, challenge
):
    refused = verify(inprocess, query, headers={"Authorization": authorization or bearer})
    assert refused.status_code == status
    assert refused.headers["www-authenticate"].startswith('Bearer realm="swarm-oauth", error=')
    assert challenge in refused.headers["www-authenticate"]
    assert refused.json()["error_description"]
    assert "x-auth-client-id" not in refused.headers


def test_two_authorization_headers_are_refused(inprocess, bearer):
    refused = verify(inprocess, headers=[("Authorization", bearer), ("Authorization", bearer)])
    assert refused.status_code == 401
    assert 'error="invalid_request"' in refused.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (b"scopes=read", "unknown query parameter 'scopes'"),
        (b"scope=read&scope=write", "repeated"),
        (b"audience=a%22b", "malformed audience"),
        (b"scope=%5C", "malformed scope"),
        (b"audience=%ff", "malformed"),
        (b"a=1&b=2&c=3", "malformed"),
        (b"scope=" + b"s+" * 1100, "longer than 2048 bytes"),
        # A proxy template whose variable was unset: not "any audience", nor "no scope".
        (b"audience=&scope=read", "'audience' is empty"),
        (b"audience", "'audience' is empty"),
        (b"audience=orders&scope=+", "'scope' is empty"),
    ],
)
def test_a_query_the_endpoint_does_not_understand_is_refused(inprocess, bearer, query, reason):
    with pytest.raises(BadQuery, match=reason):
        requirements(query)
    answer = verify(inprocess, "?" + query.decode("latin-1"), headers={"Authorization": bearer})
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_query_requirements():
    assert requirements(b"") == (None, ())
    assert requirements(b"audience=orders") == ("orders", ())
    assert requirements(b"audience=https://api.test/x&scope=a+b%20c") == (
        "https://api.test/x",
        ("a", "b", "c"),
    )


def test_unanswerable_while_the_store_is_not_followed(inprocess, bearer):
    assert verify(inprocess, headers={"Authorization": bearer}).status_code == 200
    inprocess.runtime.watcher.close()
    while inprocess.runtime.watcher.fresh():
        time.sleep(0.05)
    refused = verify(inprocess, headers={"Authorization": bearer})
    assert refused.status_code == 503
    assert refused.json()["error"] == "temporarily_unavailable"
    assert refused.headers["retry-after"] == "1"
    assert inprocess.request("GET", "/api/revocations").status_code == 503


def test_a_removed_clients_tokens_are_refused_at_once(inprocess, bearer):
    query = "?audience=inventory&scope=read"
    assert verify(inprocess, query, headers={"Authorization": bearer}).status_code == 200
    removed = inprocess.admin("POST", "/api/clients/remove", json={"client_id": "orders"})
    assert removed.status_code == 200
    # A token outlives nothing it was issued to: the services this endpoint guards, and
    # those that introspect, refuse it from now on, not at its `exp`.
    refused = verify(inprocess, query, headers={"Authorization": bearer})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    # A client added again under the id gets tokens that pass.
    again = inprocess.admin(
        "POST",
        "/api/clients/add",
        json={"client_id": "orders", "scopes": ["read"], "audiences": ["inventory"]},
    )
    fresh = inprocess.request(
        "POST",
        "/api/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        auth=("orders", again.json()["client_secret"]),
    )
    headers = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert verify(inprocess, query, headers=headers).status_code == 200
