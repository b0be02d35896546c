"""Revocations racing with other work. Mostly a token request held for its client's
cut-off second, and what changed meanwhile: the clients role and the tokens role as two
runtimes in this process, on one SQLite file.

After ``revoke-tokens`` the tokens role holds a request of that client until the next
second (``iat`` has whole seconds). Whatever the clients role did during that second (a
new secret, the client removed) must count when the request resumes: a token issued
after the cut-off is never revoked by it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from swarm_oauth.store import ChangeBatch
from tests.support.inprocess import InProcessServer

BODY = {"grant_type": "client_credentials"}


@pytest.fixture
def roles(tmp_path: Path) -> Iterator[tuple[InProcessServer, InProcessServer]]:
    clients = InProcessServer(tmp_path / "data", role="clients")
    tokens = InProcessServer(tmp_path / "data", role="tokens")
    yield clients, tokens
    tokens.close()
    clients.close()


def ask(tokens: InProcessServer, secret: str, answers: list[httpx.Response]) -> None:
    answers.append(tokens.request("POST", "/api/token", data=BODY, auth=("orders", secret)))


def held_request(
    clients: InProcessServer, tokens: InProcessServer, secret: str
) -> tuple[threading.Thread, list[httpx.Response], float]:
    """A token request the tokens role holds for a cut-off it has seen, with at least
    half a second of the hold left; the thread, where its answer goes, and the end of
    the hold."""
    for _ in range(10):
        # Just after a second begins, so that the hold is long enough to act within.
        time.sleep(math.ceil(time.time()) - time.time() + 0.02)
        revoked = clients.admin("POST", "/api/clients/revoke-tokens", json={"client_id": "orders"})
        assert revoked.status_code == 200, revoked.text
        hold_ends = math.floor(revoked.json()["issued_before"]) + 1.0
        # The tokens role follows the store within a poll (0.2 s), later on a busy machine.
        while not tokens.runtime.revocations.issue_delay("orders", time.time()):
            if time.time() >= hold_ends:
                break
            time.sleep(0.01)
        if hold_ends - time.time() < 0.5:
            continue  # seen too late in its second to act within the hold: again
        answers: list[httpx.Response] = []
        thread = threading.Thread(target=ask, args=(tokens, secret, answers))
        thread.start()
        return thread, answers, hold_ends
    pytest.fail("no cut-off left half a second of its second")


def test_a_secret_rotated_during_the_hold_is_refused_when_the_request_resumes(roles) -> None:
    clients, tokens = roles
    old = clients.admin("POST", "/api/clients/add", json={"client_id": "orders"})
    secret = old.json()["client_secret"]
    assert tokens.request("POST", "/api/token", data=BODY, auth=("orders", secret)).is_success
    thread, answers, hold_ends = held_request(clients, tokens, secret)
    time.sleep(0.05)  # the request is in, loaded with the old secret, and waiting
    assert thread.is_alive()
    rotated = clients.admin(
        "POST", "/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 0}
    )
    assert rotated.status_code == 200
    assert time.time() < hold_ends  # the rotation came within the hold
    thread.join(10)
    [answer] = answers
    assert time.time() >= hold_ends  # it was held
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"


def test_a_client_removed_during_the_hold_gets_no_token(roles) -> None:
    clients, tokens = roles
    secret = clients.admin("POST", "/api/clients/add", json={"client_id": "orders"}).json()[
        "client_secret"
    ]
    assert tokens.request("POST", "/api/token", data=BODY, auth=("orders", secret)).is_success
    thread, answers, hold_ends = held_request(clients, tokens, secret)
    time.sleep(0.05)
    assert thread.is_alive()
    removed = clients.admin("POST", "/api/clients/remove", json={"client_id": "orders"})
    assert removed.status_code == 200
    assert time.time() < hold_ends
    thread.join(10)
    [answer] = answers
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"] == "invalid_client"


def test_a_revocation_taken_while_the_watcher_reloads_the_list_is_kept(
    inprocess, monkeypatch
) -> None:
    # The process applies its own revocation at once; a reload of the list that began
    # before the revocation was written must not put the older list back in its place.
    runtime = inprocess.runtime
    secret = inprocess.admin("POST", "/api/clients/add", json={"client_id": "orders"}).json()[
        "client_secret"
    ]
    token = inprocess.request("POST", "/api/token", data=BODY, auth=("orders", secret))
    claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
    loading, release = threading.Event(), threading.Event()
    read = runtime.store.list_revocations

    def slow_read(now: float) -> list[Any]:
        records = read(now)  # the list as it was before the revocation
        loading.set()
        release.wait(10)
        return records

    monkeypatch.setattr(runtime.store, "list_revocations", slow_read)
    reload = threading.Thread(
        target=runtime._apply_changes, args=(ChangeBatch(cursor=0, complete=False),)
    )
    reload.start()
    assert loading.wait(10)
    revoked = inprocess.admin("POST", "/api/clients/revoke-tokens", json={"client_id": "orders"})
    assert revoked.status_code == 200
    release.set()
    reload.join(10)
    assert runtime.revocations.revoked("orders", claims["jti"], claims["iat"])
