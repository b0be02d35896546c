"""A Verifier that checks revocations, against a real token server: every token of a
client revoked by the admin API, one token revoked by its client (RFC 7009), the list
fetched with If-None-Match, and the token server going away and coming back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from swarm_oauth.sdk import RevocationsUnavailable, RevokedToken, Verifier
from tests.support.deadlines import refused_within as refused_since
from tests.support.server import ServerProcess

REFRESH = 1.0
# The bound docs/sdk.md promises: the refresh interval plus about a second.
WITHIN = REFRESH + 1.0


def register(server: ServerProcess, client_id: str) -> str:
    body = server.add_client(client_id, scopes=["read"], audiences=["inventory"])
    return str(body["client_secret"])


def issue(server: ServerProcess, client_id: str, secret: str) -> str:
    response = server.token(client_id, secret, audience="inventory")
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def checking(server: ServerProcess, **options: Any) -> Verifier:
    settings: dict[str, Any] = {"revocation_refresh": REFRESH, **options}
    return Verifier(issuer=server.url, audience="inventory", check_revocations=True, **settings)


def refused_within(seconds: float, verify: Callable[[], object]) -> None:
    """Call ``verify`` until it raises ``RevokedToken``; fail if a call started ``seconds``
    or more from now still passes."""

    def still_passes() -> bool:
        try:
            verify()
        except RevokedToken as error:
            assert error.description == "token has been revoked"
            return False
        return True

    message = f"still accepted {seconds:g}s after its revocation"
    refused_since(still_passes, time.monotonic(), seconds, message)


def test_every_token_of_a_revoked_client_is_refused_and_later_ones_pass(
    token_server: ServerProcess,
) -> None:
    orders, billing = register(token_server, "orders"), register(token_server, "billing")
    verifier = checking(token_server)
    old = [issue(token_server, "orders", orders) for _ in range(2)]
    bystander = issue(token_server, "billing", billing)
    for token in [*old, bystander] * 2:  # the first call, which fetched the list, cached none
        assert verifier.verify(token)["sub"] in ("orders", "billing")
    assert len(verifier.cache) == 3

    with token_server.admin() as admin:
        revoked = admin.post("/api/clients/revoke-tokens", json={"client_id": "orders"})
    assert revoked.status_code == 200, revoked.text
    refused_within(WITHIN, lambda: verifier.verify(old[0]))
    with pytest.raises(RevokedToken):
        verifier.verify(old[1])
    assert len(verifier.cache) == 1  # the bystander's; the revoked ones were dropped
    assert verifier.verify(bystander)["sub"] == "billing"
    fresh = issue(token_server, "orders", orders)  # issued after the cut-off
    assert verifier.verify(fresh)["sub"] == "orders"


def test_one_token_revoked_by_its_client_is_refused_its_siblings_pass(
    token_server: ServerProcess,
) -> None:
    secret = register(token_server, "orders")
    verifier = checking(token_server)
    leaked, sibling = issue(token_server, "orders", secret), issue(token_server, "orders", secret)

    async def main() -> None:
        assert (await verifier.averify(leaked))["jti"] != (await verifier.averify(sibling))["jti"]
        revoked = httpx.post(
            f"{token_server.url}/api/revoke", data={"token": leaked}, auth=("orders", secret)
        )
        assert revoked.status_code == 200
        await asyncio.to_thread(refused_within, WITHIN, lambda: verifier.verify(leaked))
        with pytest.raises(RevokedToken):
            await verifier.averify(leaked)
        assert (await verifier.averify(sibling))["sub"] == "orders"

    asyncio.run(main())


def test_the_list_is_fetched_again_with_its_etag(token_server: ServerProcess) -> None:
    secret = register(token_server, "orders")
    answers: list[int] = []

    def record(response: httpx.Response) -> None:
        if response.url.path == "/api/revocations":
            answers.append(response.status_code)

    client = httpx.Client(timeout=10, event_hooks={"response": [record]})
    verifier = checking(token_server, revocation_refresh=0.2, http_client=client)
    token = issue(token_server, "orders", secret)
    deadline = time.monotonic() + 10
    while answers.count(304) < 2:
        assert time.monotonic() < deadline, f"no If-None-Match refreshes: {answers}"
        assert verifier.verify(token)["sub"] == "orders"
        time.sleep(0.05)
    assert answers[0] == 200
    assert set(answers[1:]) == {304}  # nothing changed: the list in hand is kept
    with token_server.admin() as admin:
        admin.post("/api/clients/revoke-tokens", json={"client_id": "orders"})
    refused_within(10, lambda: verifier.verify(token))
    assert 200 in answers[1:]  # a new list


def test_the_last_list_outlives_the_server_until_max_stale_then_nothing_passes(
    token_server: ServerProcess, caplog: pytest.LogCaptureFixture
) -> None:
    secret = register(token_server, "orders")
    # Stale only well after the server has stopped, however slowly it stops.
    verifier = checking(token_server, revocation_refresh=0.5, revocation_max_stale=15.0)
    good, bad = issue(token_server, "orders", secret), issue(token_server, "orders", secret)
    assert verifier.verify(good)["sub"] == "orders"
    httpx.post(f"{token_server.url}/api/revoke", data={"token": bad}, auth=("orders", secret))
    refused_within(WITHIN, lambda: verifier.verify(bad))

    token_server.stop()
    kept = 0  # calls answered from the last list, before it went stale
    deadline = time.monotonic() + 30
    while True:
        try:
            assert verifier.verify(good)["sub"] == "orders"
        except RevocationsUnavailable as error:
            assert f"revocation list from {token_server.url}/api/revocations" in str(error)
            assert "ConnectError" in str(error)
            break
        with pytest.raises(RevokedToken):  # the last list still counts
            verifier.verify(bad)
        kept += 1
        assert time.monotonic() < deadline, "the list never went stale"
        time.sleep(0.1)
    assert kept > 0
    with pytest.raises(RevocationsUnavailable):
        verifier.verify(bad)  # nothing passes, and nothing is called revoked either

    token_server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            assert verifier.verify(good)["sub"] == "orders"
            break
        except RevocationsUnavailable:
            assert time.monotonic() < deadline, "no recovery after the server came back"
            time.sleep(0.1)
    with pytest.raises(RevokedToken):
        verifier.verify(bad)  # the revocation is in the store: it survived the restart
    logged = caplog.text
    assert logged.count("cannot refresh the revocation list") == 1  # once per outage
    assert logged.count("refusing every token until it is refreshed") == 1
