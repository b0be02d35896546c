"""What an on-call person reads: log lines (parsed as JSON, or text for a terminal) and
metrics scraped from real server processes, one worker or several."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
import jwt
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.cli import run_cli


def log_lines(server):
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def wait_for_line(server, predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [line for line in log_lines(server) if predicate(line)]
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no such log line; log:\n{server.log()}")


def scrape(server):
    """``/metrics`` as {sample name: {labels as a sorted tuple: value}}."""
    text = httpx.get(server.url + "/metrics").text
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return text, samples


def test_token_failures_are_logged_with_client_id_and_error_code(token_server):
    secret = token_server.add_client("orders", audiences=["inventory"])["client_secret"]
    token_server.token("orders", "wrong-secret")
    token_server.token("orders", secret, audience="billing")
    token_server.token("not a valid id", secret)
    token_server.token("orders", secret)
    token_server.stop()
    access = [
        line
        for line in log_lines(token_server)
        if line["logger"] == "swarm_oauth.access" and line["path"] == "/api/token"
    ]
    assert [(a["status"], a.get("client_id"), a.get("error")) for a in access] == [
        (401, "orders", "invalid_client"),
        (400, "orders", "invalid_target"),
        (401, None, "invalid_client"),  # an id outside the grammar is not logged
        (200, "orders", None),
    ]
    assert secret not in token_server.log() and "wrong-secret" not in token_server.log()


def test_admin_writes_name_the_client(token_server):
    secret = token_server.add_client("orders", scopes=["read"])["client_secret"]
    token = token_server.token("orders", secret).json()["access_token"]
    jti = jwt.decode(token, options={"verify_signature": False})["jti"]
    revoked = httpx.post(
        token_server.url + "/api/revoke", data={"token": token}, auth=("orders", secret)
    )
    assert revoked.status_code == 200
    with token_server.admin() as admin:
        admin.post("/api/clients/revoke-tokens", json={"client_id": "orders"})
        admin.post("/api/clients/rotate", json={"client_id": "orders", "grace_seconds": 60})
        admin.post("/api/clients/update", json={"client_id": "orders", "scopes": ["write"]})
        admin.post("/api/clients/remove", json={"client_id": "orders"})
    token_server.stop()
    events = [
        (line["msg"], line["client_id"], line.get("secret_version") or line.get("jti"))
        for line in log_lines(token_server)
        if line["logger"] == "swarm_oauth.clients"
    ]
    assert events == [
        ("client added", "orders", 1),
        ("token revoked", "orders", jti),  # by its own client, after a leak (RFC 7009)
        ("client tokens revoked", "orders", None),
        ("client secret rotated", "orders", 2),
        ("client updated", "orders", 2),
        ("client tokens revoked", "orders", None),  # a removal ends its tokens too
        ("client removed", "orders", None),
    ]
    assert secret not in token_server.log() and token not in token_server.log()


def test_key_events_are_logged_as_they_happen(token_server):
    (started,) = wait_for_line(token_server, lambda line: line["msg"] == "signing keys loaded")
    jwks = httpx.get(token_server.url + "/.well-known/jwks.json").json()
    first = jwks["keys"][0]["kid"]
    assert started["signing_kid"] == first and started["keys"] == {first: "signing"}
    env = {"SWARM_OAUTH_DATA_DIR": str(token_server.data_dir)}
    # Ahead by enough that the server sees the key while it is still pending, even slowly.
    rotated = run_cli("keys", "rotate", "--publish-ahead", "5", env=env)
    new = json.loads(rotated.stdout)["kid"]
    (published,) = wait_for_line(
        token_server, lambda line: line["msg"] == "signing key published", timeout=15
    )
    assert (published["kid"], published["state"]) == (new, "pending")
    # Activation is a timestamp passing, with nothing written: the process notices.
    (signs,) = wait_for_line(
        token_server, lambda line: line["msg"] == "signing key now signs tokens", timeout=15
    )
    (retired,) = wait_for_line(
        token_server, lambda line: line["msg"] == "signing key retired", timeout=15
    )
    assert (signs["kid"], signs["previous_state"]) == (new, "pending")
    assert (retired["kid"], retired["previous_state"]) == (first, "signing")
    assert "unpublish_at" in retired
    assert run_cli("keys", "retire", "--", first, env=env).returncode == 0
    (removed,) = wait_for_line(
        token_server, lambda line: line["msg"] == "signing key removed from the JWKS", timeout=15
    )
    assert removed["kid"] == first and removed["previous_state"] == "retired"


def test_text_logs_for_a_person(server_factory, tmp_path):
    server = server_factory(args=["--log-format", "text"])
    secret = server.add_client("orders")["client_secret"]
    server.token("orders", secret + "x")
    server.stop()
    text = server.log()
    assert not any(line.startswith("{") for line in text.splitlines())
    line = next(line for line in text.splitlines() if "path=/api/token" in line)
    assert re.match(r"\d\d:\d\d:\d\d\.\d{3}Z info +swarm_oauth\.access  request  ", line)
    assert "client_id=orders" in line and "error=invalid_client" in line and "status=401" in line
    assert "signing keys loaded" in text and secret not in text


def test_metrics_describe_the_store_and_clients_without_created_series(token_server):
    for name in ("orders", "billing"):
        token_server.add_client(name)
    deadline = time.monotonic() + 5
    while True:
        text, samples = scrape(token_server)
        if samples.get("swarm_oauth_clients", {}).get(()) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert samples["swarm_oauth_clients"][()] == 2
    assert samples["swarm_oauth_store_up"][()] == 1
    assert 0 <= samples["swarm_oauth_change_watcher_lag_seconds"][()] < 1
    assert "_created" not in text
    with token_server.admin() as admin:
        admin.post("/api/clients/remove", json={"client_id": "orders"})
    deadline = time.monotonic() + 5
    while scrape(token_server)[1]["swarm_oauth_clients"][()] != 1:
        assert time.monotonic() < deadline, "the client count did not follow the removal"
        time.sleep(0.1)


def test_with_several_workers_metrics_describe_the_whole_server(server_factory):
    server = server_factory(args=["--workers", "2"])
    secret = server.add_client("orders")["client_secret"]
    pids: set[int] = set()
    healthz = 0  # every /healthz answered, for the request counter checked below
    deadline = time.monotonic() + 30
    while len(pids) < 2:
        assert time.monotonic() < deadline, "the second worker never answered"
        pids.add(httpx.get(server.url + "/healthz").json()["pid"])
        healthz += 1
    issued = 0
    for _ in range(20):
        assert server.token("orders", secret).status_code == 200
        issued += 1
    environ = Path(f"/proc/{min(pids)}/environ").read_bytes().split(b"\0")
    metrics_dir = [v for v in environ if v.startswith(b"PROMETHEUS_MULTIPROC_DIR=")]
    assert metrics_dir, "the workers run without prometheus-client's multiprocess mode"
    # Whichever worker answers, the totals are the server's.
    for _ in range(6):
        text, samples = scrape(server)
        assert samples["swarm_oauth_token_requests_total"][(("outcome", "issued"),)] == issued
        route = samples["swarm_oauth_http_requests_total"]
        assert route[(("method", "GET"), ("route", "/healthz"), ("status", "200"))] == healthz
        assert samples["swarm_oauth_store_up"][()] == 1
        assert "_created" not in text
    # A worker that dies takes its live gauges with it; uvicorn starts another, which
    # joins store_up only once it has polled the store: never does the store look down.
    os.kill(min(pids), signal.SIGKILL)
    deadline = time.monotonic() + 20
    replaced_at = None
    while replaced_at is None or time.monotonic() < replaced_at + 1:
        assert time.monotonic() < deadline, "no new worker answered after one was killed"
        try:
            samples = scrape(server)[1]
            pid = httpx.get(server.url + "/healthz").json()["pid"]
        except httpx.TransportError:
            continue
        assert samples["swarm_oauth_token_requests_total"][(("outcome", "issued"),)] == issued
        assert samples["swarm_oauth_store_up"][()] == 1, "a starting worker pulled store_up to 0"
        if pid not in pids and replaced_at is None:
            replaced_at = time.monotonic()
        time.sleep(0.05)
    server.stop()
    directory = metrics_dir[0].split(b"=", 1)[1].decode()
    assert not os.path.exists(directory), "serve left its metrics directory behind"


@pytest.mark.postgres
def test_store_up_follows_an_outage_in_every_worker(server_factory, postgres_cluster_factory):
    from tests.support.postgres import create_database

    cluster = postgres_cluster_factory()
    env = {"SWARM_OAUTH_DATABASE_URL": create_database(cluster.url)}
    server = server_factory(env=env, args=["--workers", "2"])

    def store_up() -> float | str | None:
        try:
            return scrape(server)[1].get("swarm_oauth_store_up", {}).get(())
        except httpx.TransportError as exc:
            return f"no answer ({exc!r})"

    def wait_for(value: float, timeout: float, when: str) -> None:
        deadline = time.monotonic() + timeout
        while (read := store_up()) != value:
            assert time.monotonic() < deadline, (
                f"store_up read {read!r}, not {value}, {when}; the log:\n{server.log()[-6000:]}"
            )
            time.sleep(0.2)

    # A worker joins store_up at its first poll, so one worker's 1 can be read while the
    # other still starts; and a worker that cannot start stops the server (as documented),
    # which an outage begun before both had started would do.
    server.worker_pids(2)
    wait_for(1, 10, "with the database up")
    cluster.stop()
    wait_for(0, 20, "with the database down")
    cluster.start()
    wait_for(1, 30, "after the database came back")


def test_a_worker_replaced_during_a_store_outage_waits_for_the_store(
    server_factory, postgres_cluster_factory
):
    from tests.support.postgres import create_database

    cluster = postgres_cluster_factory()
    env = {"SWARM_OAUTH_DATABASE_URL": create_database(cluster.url)}
    server = server_factory(env=env, args=["--workers", "2"])
    jwks = server.url + "/.well-known/jwks.json"

    def waiting() -> list[dict]:
        return [line for line in log_lines(server) if line["msg"].startswith("a worker waits")]

    def worker_dies_in_an_outage() -> int:
        """Stop the database, kill a worker; the pid of the one left."""
        first, second = sorted(server.worker_pids(2))
        waited = len(waiting())
        cluster.stop()
        os.kill(first, signal.SIGKILL)
        # The survivor goes on answering what needs no store, while the replacement
        # waits; a replacement that gave up would have stopped the whole server.
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            try:
                answer = httpx.get(jwks, timeout=5)
            except httpx.TransportError as exc:
                pytest.fail(f"the server stopped answering ({exc!r}); the log:\n{server.log()}")
            assert answer.status_code == 200 and answer.json()["keys"], answer.text
            time.sleep(0.25)
        assert len(waiting()) > waited, server.log()[-4000:]
        assert server.proc is not None and server.proc.poll() is None
        return second

    survivor = worker_dies_in_an_outage()
    cluster.start()
    # The replacement starts once the store is back, and serves beside the survivor.
    assert survivor in (pids := server.worker_pids(2, timeout=60)) and len(pids) == 2

    # Stopping the server while a replacement waits ends it at once, not at the store's
    # return: the waiting worker ends by the signal.
    worker_dies_in_an_outage()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(15) == 0


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_server_writes_its_last_log_lines(server_factory, workers, stop):
    server = server_factory(args=["--workers", str(workers)])
    for _ in range(5):
        assert httpx.get(server.url + "/healthz").status_code == 200
    assert server.proc is not None
    server.proc.send_signal(stop)
    status = server.proc.wait(15)
    lines = log_lines(server)
    healthz = [line for line in lines if line.get("path") == "/healthz"]
    finished = [line for line in lines if line["msg"].startswith("Finished server process")]
    # The access lines of the last requests, and every worker's shutdown to its last line.
    assert len(healthz) >= 5, server.log()
    assert len(finished) == workers, server.log()
    if workers == 1:
        # Ended by the signal once stopped, as uvicorn does: a supervisor sees why.
        assert status == -stop
        assert lines[-1] is finished[0]
    else:
        assert status == 0


def test_workers_started_again_keep_the_admin_token_the_server_started_with(server_factory):
    server = server_factory(args=["--workers", "2"])
    started_with = server.admin_token
    pids = server.worker_pids(2)
    # The file changes under the running server; then every worker dies and is replaced.
    (server.data_dir / "admin-token").write_text("a-token-written-later\n")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    answered: set[int] = set()
    while len(answered) < 2:
        assert time.monotonic() < deadline, "no new workers answered"
        try:
            answered.add(httpx.get(server.url + "/healthz").json()["pid"])
        except httpx.TransportError:
            time.sleep(0.05)
    assert not answered & pids
    for _ in range(10):  # whichever worker answers
        kept = httpx.get(
            server.url + "/api/clients", headers={"Authorization": f"Bearer {started_with}"}
        )
        assert kept.status_code == 200, kept.text
        later = httpx.get(
            server.url + "/api/clients", headers={"Authorization": "Bearer a-token-written-later"}
        )
        assert later.status_code == 401


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_stop_when_their_supervisor_is_killed(server_factory):
    server = server_factory(args=["--workers", "2"])
    workers = server.worker_pids(2)
    try:
        # What the OOM killer does: the supervisor gets no chance to stop its workers.
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(_alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "the workers outlived their supervisor"
            time.sleep(0.05)
        # So the port is free for the server started again.
        assert httpx.get(server.restart().url + "/healthz").status_code == 200
    finally:
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
