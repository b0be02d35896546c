"""Several real server processes on one PostgreSQL database, as a scaled-out stack runs."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_oauth.keys.master import MasterKey
from swarm_oauth.store.postgres import PostgresStore
from tests.support.deadlines import refused_within
from tests.support.postgres import PostgresCluster, create_database
from tests.support.server import ServerProcess

pytestmark = pytest.mark.postgres

Start = Callable[..., ServerProcess]


def shared_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    """What every replica of one deployment shares: the database, master key and admin
    token (as Docker secrets would provide them); nothing is shared through a data dir."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    master, admin = secrets_dir / "master_key", secrets_dir / "admin_token"
    if not master.exists():
        master.write_text(MasterKey.generate_text())
        admin.write_text(secrets.token_urlsafe(32))
    return {
        "SWARM_OAUTH_DATABASE_URL": database_url,
        "SWARM_OAUTH_MASTER_KEY_FILE": str(master),
        "SWARM_OAUTH_ADMIN_TOKEN_FILE": str(admin),
    }


def start_replicas(
    server_factory: Start, env: dict[str, str], tmp_path: Path, role: str, count: int
) -> list[ServerProcess]:
    """Start ``count`` processes of ``role`` at the same moment, each on its own data dir."""
    servers = [
        server_factory(data_dir=tmp_path / f"{role}-{n}", role=role, env=env, wait=False)
        for n in range(count)
    ]
    for server in servers:
        server.wait_ready(60)
    return servers


def kids(server: ServerProcess) -> list[str]:
    jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=10).json()
    return sorted(key["kid"] for key in jwks["keys"])


def wait_until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_fifty_simultaneous_http_adds_give_one_201_and_49_409(
    server_factory: Start, postgres_url: str, tmp_path: Path
) -> None:
    env = shared_env(postgres_url, tmp_path)
    admins = start_replicas(server_factory, env, tmp_path, "clients", 2)
    barrier = threading.Barrier(50)

    def add(n: int) -> int:
        with admins[n % 2].admin() as admin:
            barrier.wait(30)
            return admin.post("/api/clients/add", json={"client_id": "orders"}).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(add, range(50)))

    assert sorted(statuses) == [201] + [409] * 49
    with admins[0].admin() as admin:
        listed = admin.get("/api/clients").json()
    ids = [c["client_id"] for c in listed["clients"]]
    assert ids == ["orders"]


def test_tokens_replicas_starting_at_once_share_one_signing_key(
    server_factory: Start, postgres_url: str, tmp_path: Path
) -> None:
    env = shared_env(postgres_url, tmp_path)
    replicas = start_replicas(server_factory, env, tmp_path, "tokens", 4)

    published = [kids(replica) for replica in replicas]
    assert len(published[0]) == 1
    assert published == [published[0]] * len(replicas)
    store = PostgresStore(postgres_url)
    try:
        assert [k.kid for k in store.list_keys()] == published[0]
    finally:
        store.close()


def test_remove_and_rotate_reach_every_tokens_replica_within_a_second(
    server_factory: Start, postgres_url: str, tmp_path: Path
) -> None:
    env = shared_env(postgres_url, tmp_path)
    (admin_server,) = start_replicas(server_factory, env, tmp_path, "clients", 1)
    replicas = start_replicas(server_factory, env, tmp_path, "tokens", 3)
    rotated_secret = admin_server.add_client("billing")["client_secret"]
    removed_secret = admin_server.add_client("orders")["client_secret"]
    for replica in replicas:  # every replica now caches both clients
        assert replica.token("billing", rotated_secret).status_code == 200
        assert replica.token("orders", removed_secret).status_code == 200

    with admin_server.admin() as admin:
        assert admin.post("/api/clients/remove", json={"client_id": "orders"}).status_code == 200
        rotation = admin.post("/api/clients/rotate", json={"client_id": "billing"})
    assert rotation.status_code == 200
    new_secret = rotation.json()["client_secret"]
    changed_at = time.monotonic()

    def serves_old_state(replica: ServerProcess) -> bool:
        return (
            replica.token("orders", removed_secret).status_code == 200
            or replica.token("billing", rotated_secret).status_code == 200
        )

    for replica in replicas:
        refused_within(
            partial(serves_old_state, replica),
            changed_at,
            1.0,
            f"{replica.url} still serves old state",
        )
    for replica in replicas:
        refused = replica.token("orders", removed_secret)
        assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
        assert replica.token("billing", rotated_secret).status_code == 401
        assert replica.token("billing", new_secret).status_code == 200


def _json_error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) >= {"error", "error_description"}, body
    return dict(body)


def test_postgres_outage_gives_503_then_service_resumes_with_nothing_lost(
    server_factory: Start,
    postgres_cluster_factory: Callable[[], PostgresCluster],
    tmp_path: Path,
) -> None:
    cluster = postgres_cluster_factory()
    database_url = create_database(cluster.url)
    env = shared_env(database_url, tmp_path)
    (admin_server,) = start_replicas(server_factory, env, tmp_path, "clients", 1)
    replicas = start_replicas(server_factory, env, tmp_path, "tokens", 2)
    secret = admin_server.add_client("orders")["client_secret"]
    for replica in replicas:
        assert replica.token("orders", secret).status_code == 200
    published = kids(replicas[0])

    cluster.stop()
    # A replica may serve from its caches until it notices it cannot vouch for them.
    # A hang fails here through httpx's timeout, a 500 through the status check.
    for replica in replicas:
        wait_until(
            lambda r=replica: r.token("orders", secret).status_code != 200,
            within=10,
            what="tokens still issued long after the database stopped",
        )
        refused = replica.token("orders", secret)
        assert refused.status_code == 503, refused.text
        _json_error(refused)
        not_ready = httpx.get(f"{replica.url}/readyz", timeout=10)
        assert not_ready.status_code == 503, not_ready.text
    with admin_server.admin() as admin:
        failed_add = admin.post("/api/clients/add", json={"client_id": "during-outage"})
    assert failed_add.status_code == 503, failed_add.text
    _json_error(failed_add)

    cluster.start()
    for replica in replicas:
        wait_until(
            lambda r=replica: r.token("orders", secret).status_code == 200,
            within=30,
            what="service did not resume after the database came back",
        )
        assert httpx.get(f"{replica.url}/readyz", timeout=10).status_code == 200
        assert kids(replica) == published
    later = admin_server.add_client("billing")["client_secret"]
    for replica in replicas:
        assert replica.token("billing", later).status_code == 200

    store = PostgresStore(database_url)
    try:
        assert [c.client_id for c in store.list_clients()] == ["billing", "orders"]
        assert [k.kid for k in store.list_keys()] == published
    finally:
        store.close()


def test_revocations_reach_every_tokens_replica_within_a_second(
    server_factory: Start, postgres_url: str, tmp_path: Path
) -> None:
    # One issuer for all, as in the stack: each replica's default would name its own port.
    env = {**shared_env(postgres_url, tmp_path), "SWARM_OAUTH_ISSUER": "http://oauth-tokens.test"}
    (admin_server,) = start_replicas(server_factory, env, tmp_path, "clients", 1)
    replicas = start_replicas(server_factory, env, tmp_path, "tokens", 3)
    secret = admin_server.add_client("orders")["client_secret"]
    first, second = (replicas[0].token("orders", secret).json()["access_token"] for _ in "12")

    def passes(replica: ServerProcess, token: str) -> bool:
        headers = {"Authorization": f"Bearer {token}"}
        answer = httpx.get(f"{replica.url}/api/verify", headers=headers, timeout=10)
        assert answer.status_code in (200, 401), answer.text
        return answer.status_code == 200

    def refused_everywhere_within_a_second(token: str) -> None:
        since = time.monotonic()
        for replica in replicas:
            message = f"{replica.url} still lets it through"
            refused_within(partial(passes, replica, token), since, 1.0, message)

    for replica in replicas:  # every replica now remembers both tokens
        assert passes(replica, first) and passes(replica, second)

    # RFC 7009 at one replica: the others learn it from the change log.
    revoked = httpx.post(
        f"{replicas[0].url}/api/revoke", data={"token": first}, auth=("orders", secret), timeout=10
    )
    assert revoked.status_code == 200
    refused_everywhere_within_a_second(first)
    assert all(passes(replica, second) for replica in replicas)

    with admin_server.admin() as admin:
        answer = admin.post("/api/clients/revoke-tokens", json={"client_id": "orders"})
    assert answer.status_code == 200, answer.text
    refused_everywhere_within_a_second(second)
    fresh = replicas[1].token("orders", secret).json()["access_token"]
    assert all(passes(replica, fresh) for replica in replicas)
