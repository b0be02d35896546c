"""RFC 7662 introspection and RFC 7009 revocation, answers checked member by member, the
admin API's revoke-tokens and the published revocation list: the token server's handlers
in this process, on a real SQLite store."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from swarm_oauth.tokens import TokenIssuer
from tests.support.inprocess import ISSUER, InProcessServer

Credentials = tuple[str, str]


@pytest.fixture
def orders(inprocess) -> Credentials:
    """A client that gets tokens; its secret."""
    added = inprocess.admin(
        "POST",
        "/api/clients/add",
        json={"client_id": "orders", "scopes": ["read", "write"], "audiences": ["inventory"]},
    )
    return "orders", added.json()["client_secret"]


@pytest.fixture
def inventory(inprocess) -> Credentials:
    """A resource server: a client too, that introspects the tokens it receives."""
    added = inprocess.admin("POST", "/api/clients/add", json={"client_id": "inventory"})
    return "inventory", added.json()["client_secret"]


def token(server: InProcessServer, credentials: Credentials, **form: str) -> str:
    response = server.request(
        "POST", "/api/token", data={"grant_type": "client_credentials", **form}, auth=credentials
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def introspect(server: InProcessServer, credentials: Credentials, value: str) -> dict:
    response = server.request("POST", "/api/introspect", data={"token": value}, auth=credentials)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-type"] == "application/json"
    return dict(response.json())


def revoke(server: InProcessServer, credentials: Credentials, value: str):
    return server.request("POST", "/api/revoke", data={"token": value}, auth=credentials)


def test_an_active_token_is_described_by_the_rfc_7662_members(inprocess, orders, inventory):
    issued = token(inprocess, orders, scope="read")
    claims = jwt.decode(issued, options={"verify_signature": False})

    answer = introspect(inprocess, inventory, issued)

    assert answer == {
        "active": True,
        "client_id": "orders",
        "sub": "orders",
        "scope": "read",
        "aud": "inventory",
        "iss": ISSUER,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "jti": claims["jti"],
        "token_type": "Bearer",
    }
    assert isinstance(answer["exp"], int) and isinstance(answer["iat"], int)
    assert answer["iat"] <= time.time() < answer["exp"]
    # client_secret_post authenticates the caller as well as Basic does.
    by_post = inprocess.request(
        "POST",
        "/api/introspect",
        data={"token": issued, "client_id": orders[0], "client_secret": orders[1]},
    )
    assert by_post.json() == answer


def test_anything_not_valid_here_is_just_inactive(inprocess, orders, inventory, tmp_path: Path):
    keyring = inprocess.runtime.keyring
    elsewhere = TokenIssuer("http://elsewhere.test", lambda: keyring)
    live = jwt.decode(token(inprocess, orders), options={"verify_signature": False})
    key = keyring.signing_key(time.time())
    expired = jwt.encode(
        {**live, "iat": live["iat"] - 2000, "exp": live["exp"] - 2000},
        key.private_key,
        key.alg,
        headers={"kid": key.kid, "typ": "at+jwt"},
    )
    other_server = InProcessServer(tmp_path / "other")
    try:
        other_added = other_server.admin("POST", "/api/clients/add", json={"client_id": "orders"})
        other_token = token(other_server, ("orders", other_added.json()["client_secret"]))
    finally:
        other_server.close()
    revoked = token(inprocess, orders)
    assert revoke(inprocess, orders, revoked).status_code == 200

    for value in (
        "garbage",
        "a.b.c",
        elsewhere.issue("orders", [], ["inventory"], time.time()).access_token,
        other_token,  # same issuer URL, another server's keys
        expired,
        revoked,
    ):
        assert introspect(inprocess, inventory, value) == {"active": False}


def test_a_token_is_inactive_from_its_exp_without_the_verifiers_leeway(
    inprocess, orders, inventory
):
    live = jwt.decode(token(inprocess, orders), options={"verify_signature": False})
    key = inprocess.runtime.keyring.signing_key(time.time())

    def expiring(exp: int) -> str:
        claims = {**live, "exp": exp, "jti": f"{live['jti']}-{exp}"}
        return jwt.encode(
            claims, key.private_key, key.alg, headers={"kid": key.kid, "typ": "at+jwt"}
        )

    # Forward-auth lets it pass for 30 s more (clock skew between servers); RFC 7662's
    # active says whether it is current now.
    assert introspect(inprocess, inventory, expiring(int(time.time()) - 5)) == {"active": False}
    soon = expiring(int(time.time()) + 2)
    assert introspect(inprocess, inventory, soon)["active"] is True  # now remembered
    time.sleep(max(0.0, jwt.decode(soon, options={"verify_signature": False})["exp"] - time.time()))
    assert introspect(inprocess, inventory, soon) == {"active": False}


def test_introspection_needs_the_callers_client_credentials(inprocess, orders):
    issued = token(inprocess, orders)
    for auth in (None, ("orders", "wrong-secret"), ("nobody", "secret")):
        refused = inprocess.request("POST", "/api/introspect", data={"token": issued}, auth=auth)
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_client"
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert "active" not in refused.json()
    missing = inprocess.request("POST", "/api/introspect", data={}, auth=orders)
    assert (missing.status_code, missing.json()["error"]) == (400, "invalid_request")
    # Credentials come first (RFC 7662 §2.1): without them, no word about the form.
    for path in ("/api/introspect", "/api/revoke"):
        unknown = inprocess.request("POST", path, data={"token": ""})
        assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client")
    as_json = inprocess.request("POST", "/api/introspect", json={"token": issued}, auth=orders)
    assert as_json.status_code == 400
    assert "Content-Type" in as_json.json()["error_description"]
    assert inprocess.request("GET", "/api/introspect").status_code == 405


def test_revoking_what_is_no_valid_token_here_is_200(inprocess, orders):
    keyring = inprocess.runtime.keyring
    elsewhere = TokenIssuer("http://elsewhere.test", lambda: keyring)
    for value in ("garbage", elsewhere.issue("orders", [], ["x"], time.time()).access_token):
        answer = revoke(inprocess, orders, value)
        assert answer.status_code == 200 and answer.content == b""
    assert inprocess.request("GET", "/api/revocations").json() == {"tokens": [], "clients": []}
    assert revoke(inprocess, ("orders", "wrong"), "garbage").status_code == 401


def test_a_client_revokes_its_own_tokens_and_no_one_elses(inprocess, orders, inventory):
    first, second = token(inprocess, orders), token(inprocess, orders)

    stolen = revoke(inprocess, inventory, first)
    assert (stolen.status_code, stolen.json()["error"]) == (400, "unauthorized_client")
    assert introspect(inprocess, inventory, first)["active"] is True

    assert revoke(inprocess, orders, first).status_code == 200
    assert introspect(inprocess, inventory, first) == {"active": False}
    assert introspect(inprocess, inventory, second)["active"] is True
    assert revoke(inprocess, orders, first).status_code == 200  # again: still fine

    listed = inprocess.request("GET", "/api/revocations").json()
    claims = jwt.decode(first, options={"verify_signature": False})
    assert [(t["jti"], t["client_id"]) for t in listed["tokens"]] == [(claims["jti"], "orders")]
    assert listed["tokens"][0]["expires_at"] > claims["exp"]


def test_the_admin_revokes_every_token_of_a_client_issued_until_now(inprocess, orders, inventory):
    before = [token(inprocess, orders) for _ in range(2)]
    untouched = token(inprocess, inventory)

    answer = inprocess.admin("POST", "/api/clients/revoke-tokens", json={"client_id": "orders"})

    assert answer.status_code == 200, answer.text
    assert answer.json()["client_id"] == "orders"
    assert answer.json()["issued_before"] == pytest.approx(time.time(), abs=5)
    for value in before:
        assert introspect(inprocess, inventory, value) == {"active": False}
    assert introspect(inprocess, orders, untouched)["active"] is True
    # A token issued after the revocation is valid, even within the same second.
    assert introspect(inprocess, inventory, token(inprocess, orders))["active"] is True
    (listed,) = inprocess.request("GET", "/api/revocations").json()["clients"]
    assert listed["client_id"] == "orders"
    assert listed["issued_before"] == answer.json()["issued_before"]


@pytest.mark.parametrize(
    ("body", "status"),
    [({"client_id": "ghost"}, 404), ({"client_id": "no spaces"}, 400), ({}, 400)],
)
def test_revoke_tokens_refuses_what_it_cannot_do(inprocess, body, status):
    refused = inprocess.admin("POST", "/api/clients/revoke-tokens", json=body)
    assert refused.status_code == status
    unauthorized = inprocess.request("POST", "/api/clients/revoke-tokens", json=body)
    assert unauthorized.status_code == 401


def test_the_revocation_list_is_tagged_and_answers_304_while_unchanged(inprocess, orders):
    first = inprocess.request("GET", "/api/revocations")
    etag = first.headers["etag"]
    same = inprocess.request("GET", "/api/revocations", headers={"If-None-Match": etag})
    assert (same.status_code, same.content) == (304, b"")
    # RFC 9110 §13.1.2: a list of tags, compared weakly, or "*"; anything else names none.
    for named in (f'"other", {etag}', f"W/{etag}", f' ,{etag} , "x"', "*"):
        answer = inprocess.request("GET", "/api/revocations", headers={"If-None-Match": named})
        assert answer.status_code == 304, named
    for unnamed in (f"x{etag}y", etag[:-2] + '"', etag[1:-1], f"{etag}; W/"):
        answer = inprocess.request("GET", "/api/revocations", headers={"If-None-Match": unnamed})
        assert answer.status_code == 200 and answer.headers["etag"] == etag, unnamed
    revoke(inprocess, orders, token(inprocess, orders))
    changed = inprocess.request("GET", "/api/revocations", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert len(changed.json()["tokens"]) == 1


def test_metadata_and_openapi_advertise_the_endpoints(inprocess):
    metadata = inprocess.request("GET", "/.well-known/oauth-authorization-server").json()
    assert metadata["introspection_endpoint"] == f"{ISSUER}/api/introspect"
    assert metadata["revocation_endpoint"] == f"{ISSUER}/api/revoke"
    for kind in ("introspection", "revocation"):
        assert metadata[f"{kind}_endpoint_auth_methods_supported"] == [
            "client_secret_basic",
            "client_secret_post",
        ]
    paths = inprocess.request("GET", "/openapi.json").json()["paths"]
    for path in ("/api/introspect", "/api/revoke", "/api/revocations", "/api/verify"):
        assert path in paths
    assert "/api/clients/revoke-tokens" in paths
