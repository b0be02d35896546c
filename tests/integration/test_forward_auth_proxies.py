"""Forward-auth through real reverse proxies: nginx (``auth_request``) and Caddy
(``forward_auth``) from Debian's packages, running the recipes of deploy/forward-auth/, in
front of busybox httpd. The token server runs as in the stack: a clients process and a
tokens process sharing one store, the proxies asking the tokens process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.support.deadlines import refused_within
from tests.support.proxies import PROXIES, RECIPES, WHOAMI_PATH, Process, start_upstream
from tests.support.server import ServerProcess


@dataclass
class Protected:
    """A service behind a proxy, and the token server's two roles."""

    clients: ServerProcess
    tokens: ServerProcess
    proxy: Process
    secret: str

    def token(self, **form: str) -> str:
        response = self.tokens.token("caller", self.secret, **form)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def call(self, token: str | None = None, **headers: str) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.get(self.proxy.url + WHOAMI_PATH, headers=headers, timeout=10)


def passed(response: httpx.Response) -> dict[str, str]:
    """What the service reported about a request that reached it."""
    assert response.status_code == 200, (response.status_code, response.text)
    return dict(line.split("=", 1) for line in response.text.splitlines())


@pytest.fixture(params=sorted(PROXIES))
def protected(request, server_factory, tmp_path) -> Iterator[Protected]:
    data = tmp_path / "shared"
    clients = server_factory(data_dir=data, role="clients")
    tokens = server_factory(data_dir=data, role="tokens")
    secret = clients.add_client(
        "caller", scopes=["read", "write"], audiences=["orders", "billing"]
    )["client_secret"]
    started = [start_upstream(tmp_path)]
    try:
        started.append(PROXIES[request.param](tmp_path, tokens.url, started[0].url))
        yield Protected(clients, tokens, started[-1], secret)
    finally:
        for process in reversed(started):
            process.stop()


def test_a_request_without_a_token_never_reaches_the_service(protected):
    refused = protected.call()
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert "upstream=busybox" not in refused.text


def test_a_valid_token_reaches_the_service_with_the_identity_and_nothing_forged(protected):
    token = protected.token(scope="read", audience="orders")
    seen = passed(protected.call(token))
    assert seen == {
        "upstream": "busybox",
        "client_id": "caller",
        "scope": "read",
        "audience": "orders",
    }
    forged = protected.call(
        token, **{"X-Auth-Client-Id": "admin", "X-Auth-Scope": "admin", "X-Auth-Audience": "all"}
    )
    assert passed(forged) == seen
    # The service is CGI: it reads X_Auth_Client_Id as X-Auth-Client-Id.
    for client, scope in (
        ("X_Auth_Client_Id", "X_Auth_Scope"),
        ("X-Auth_Client-Id", "X-Auth_Scope"),
        ("X_Auth-Client-Id", "x_auth-scope"),
    ):
        forged = protected.call(token, **{client: "admin", scope: "admin"})
        assert passed(forged) == seen, client


def test_a_token_for_another_audience_is_401(protected):
    refused = protected.call(protected.token(scope="read", audience="billing"))
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert "upstream=busybox" not in refused.text


def test_a_token_without_the_scope_is_403(protected):
    refused = protected.call(protected.token(scope="write", audience="orders"))
    assert refused.status_code == 403
    assert "upstream=busybox" not in refused.text


def wait_refused(protected: Protected, token: str, since: float) -> httpx.Response:
    """Call until the proxy refuses ``token``, and return the refusal; fail if a call sent a
    second or more after ``since`` still got through."""
    answers: list[httpx.Response] = []

    def still_passes() -> bool:
        answers.append(protected.call(token))
        return answers[-1].status_code == 200

    refused_within(still_passes, since, 1.0, "still let through a second after revocation")
    return answers[-1]


def test_revoked_tokens_are_refused_within_a_second(protected):
    one, other = (protected.token(scope="read", audience="orders") for _ in range(2))
    passed(protected.call(one))
    passed(protected.call(other))

    # RFC 7009, by the client itself: that token only.
    revoked = httpx.post(
        protected.tokens.url + "/api/revoke",
        data={"token": one},
        auth=("caller", protected.secret),
        timeout=10,
    )
    assert revoked.status_code == 200
    assert wait_refused(protected, one, time.monotonic()).status_code == 401
    passed(protected.call(other))

    # Every token of the client, through the admin API of the other process.
    with protected.clients.admin() as admin:
        answer = admin.post("/api/clients/revoke-tokens", json={"client_id": "caller"})
    assert answer.status_code == 200, answer.text
    assert wait_refused(protected, other, time.monotonic()).status_code == 401
    # A token issued after the revocation passes.
    assert passed(protected.call(protected.token(scope="read", audience="orders")))


def test_the_documented_recipes_are_the_tested_ones():
    guide = (RECIPES.parents[1] / "docs" / "proxies.md").read_text()
    for name in ("nginx.conf", "Caddyfile", "traefik.yml"):
        assert (RECIPES / name).read_text() in guide, f"docs/proxies.md differs from {name}"
