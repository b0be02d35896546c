"""What an unauthenticated caller sends to the token endpoint cannot grow memory, reach the
store with a malformed id, or make the store look down (SQLite in process, PostgreSQL
behind a real server process)."""

from __future__ import annotations

import base64
import re
import threading

import httpx
import pytest

from swarm_oauth.clients.cache import ClientCache
from swarm_oauth.store import ChangeBatch, StoreRejected
from swarm_oauth.store.postgres import PostgresStore

TOKEN_FORM = {"content-type": "application/x-www-form-urlencoded"}
MALFORMED_IDS = ["a\x00b", "x" * 129, "has space", "caf\u00e9", "../etc", "r" * 65536]


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def ask(server, client_id: str):
    return server.request(
        "POST",
        "/api/token",
        content=b"grant_type=client_credentials",
        headers={**TOKEN_FORM, "authorization": basic(client_id, "guess")},
    )


def test_malformed_ids_never_reach_the_cache_or_the_store(inprocess):
    statements: list[str] = []
    inprocess.runtime.store._reader.set_trace_callback(statements.append)
    for client_id in MALFORMED_IDS:
        response = ask(inprocess, client_id)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"
    # A lookup selects one client by id (the metrics' count of all clients is no lookup).
    lookups = [s for s in statements if "FROM clients WHERE client_id =" in s]
    assert not lookups
    assert inprocess.runtime.client_cache.usage() == {
        "known_entries": 0,
        "known_bytes": 0,
        "unknown_entries": 0,
        "unknown_bytes": 0,
    }
    # A well-formed unknown id is looked up once, then answered from the cache.
    for _ in range(3):
        assert ask(inprocess, "nobody").json()["error"] == "invalid_client"
    assert len([s for s in statements if "FROM clients WHERE client_id =" in s]) == 1
    assert inprocess.runtime.client_cache.usage()["unknown_entries"] == 1


def test_a_flood_of_unknown_ids_is_bounded_and_costs_no_client_its_token(inprocess):
    runtime = inprocess.runtime
    runtime.client_cache = ClientCache(runtime.store, max_unknown_entries=50)
    secret = inprocess.admin("POST", "/api/clients/add", json={"client_id": "orders"}).json()[
        "client_secret"
    ]
    # The watcher drops the entry when it applies the add: wait until it has applied every
    # change up to now, after which the entry stays.
    added = runtime.store.last_change()
    caught_up = threading.Event()

    def round_done(batch: ChangeBatch | None) -> None:
        if batch is not None and batch.cursor >= added:
            caught_up.set()

    runtime.watcher.add_listener(round_done)
    assert caught_up.wait(10), "the change watcher did not apply the add"
    assert ask(inprocess, "orders").status_code == 401  # a wrong secret, but cached
    assert runtime.client_cache.peek("orders")[0]
    for n in range(400):
        assert ask(inprocess, f"unknown-{n}").status_code == 401
    usage = runtime.client_cache.usage()
    assert usage["unknown_entries"] == 50
    assert usage["known_entries"] == 1
    assert runtime.client_cache.peek("orders")[0]
    response = inprocess.request(
        "POST",
        "/api/token",
        content=b"grant_type=client_credentials",
        headers={**TOKEN_FORM, "authorization": basic("orders", secret)},
    )
    assert response.status_code == 200


# -- PostgreSQL ------------------------------------------------------------------------------


def outage_count(server) -> float:
    text = httpx.get(server.url + "/metrics", timeout=10).text
    match = re.search(
        r'^swarm_oauth_token_requests_total\{outcome="temporarily_unavailable"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else 0.0


@pytest.mark.postgres
def test_nul_in_a_client_id_is_invalid_client_and_no_outage_on_postgresql(
    server_factory, postgres_url
):
    server = server_factory(env={"SWARM_OAUTH_DATABASE_URL": postgres_url})
    server.add_client("orders")
    for body in (
        b"grant_type=client_credentials&client_id=a%00b&client_secret=x",
        b"grant_type=client_credentials&client_id=orders%00&client_secret=x",
    ):
        response = httpx.post(
            server.url + "/api/token", content=body, headers=TOKEN_FORM, timeout=10
        )
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
    response = httpx.post(
        server.url + "/api/token",
        content=b"grant_type=client_credentials",
        headers={**TOKEN_FORM, "authorization": basic("a\x00b", "x")},
        timeout=10,
    )
    assert response.json()["error"] == "invalid_client"
    assert outage_count(server) == 0
    assert httpx.get(server.url + "/readyz", timeout=10).status_code == 200
    with server.admin() as admin:
        assert admin.get("/api/clients/a%00b").status_code == 400
        add = admin.post(
            "/api/clients/add", json={"client_id": "meta", "metadata": {"k": "a\u0000b"}}
        )
        assert add.status_code == 400


@pytest.mark.postgres
def test_postgresql_refusing_a_value_is_not_an_outage(postgres_url):
    store = PostgresStore(postgres_url)
    try:
        store.migrate()
        with pytest.raises(StoreRejected):
            store.get_client("a\x00b")
        store.ping()
        assert store.get_client("nobody") is None
    finally:
        store.close()
