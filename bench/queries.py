"""Store queries per token, counted rather than read from the code.

Runs the real server (``create_app`` on uvicorn) in this process on a temporary SQLite
data dir, with every SQLite connection traced, and sends real HTTP token requests. A
cached client should cost no query at all; the change watcher's polls run on their own
clock whatever the load, so they are counted apart.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.procs import free_port
from swarm_oauth.api.app import create_app
from swarm_oauth.config import ServerSettings
from swarm_oauth.runtime import Runtime
from swarm_oauth.watcher import POLL_SECONDS


@dataclass(frozen=True)
class QueryCount:
    """What the store was asked while serving tokens."""

    cold_client_queries: int  # for the first token of a client (cache empty)
    tokens: int  # tokens issued after it
    client_queries: int  # client lookups during those tokens
    other_queries: int  # anything else in that window, change-log polls excluded
    poll_queries_per_second: float  # the change watcher, independent of load

    @property
    def per_token(self) -> float:
        return (self.client_queries + self.other_queries) / self.tokens


def classify(sql: str) -> str:
    """``client`` for reads of the clients table, ``poll`` for the change log."""
    text = " ".join(sql.split()).lower()
    if "from clients" in text:
        return "client"
    if "from changes" in text or text.startswith("select max(seq)"):
        return "poll"
    return "other"


@contextmanager
def traced_sqlite() -> Iterator[Counter[str]]:
    """Count, by ``classify``, every statement of SQLite connections opened inside."""
    counts: Counter[str] = Counter()
    real_connect = sqlite3.connect

    def trace(sql: str) -> None:
        counts[classify(sql)] += 1

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]
    try:
        yield counts
    finally:
        sqlite3.connect = real_connect


def _wait(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("in-process server did not start")
        time.sleep(0.02)


def count_queries(data_dir: Path, tokens: int = 1000) -> QueryCount:
    """Serve ``tokens`` tokens in process and count the store's statements."""
    port = free_port()
    settings = ServerSettings(port=port, data_dir=data_dir, log_level="warning")
    # The embedded default's first-start warnings are for operators, not this report.
    logging.getLogger("swarm_oauth").setLevel(logging.ERROR)
    with traced_sqlite() as counts:
        runtime = Runtime.open(settings)
        config = uvicorn.Config(
            create_app(runtime), port=port, log_config=None, access_log=False, lifespan="on"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            _wait(lambda: server.started, 20)
            base = f"http://127.0.0.1:{port}"
            admin_token = (data_dir / "admin-token").read_text().strip()
            with httpx.Client(base_url=base) as http:
                created = http.post(
                    "/api/clients/add",
                    json={"client_id": "bench"},
                    headers={"authorization": f"Bearer {admin_token}"},
                )
                created.raise_for_status()
                auth = ("bench", created.json()["client_secret"])
                form = {"grant_type": "client_credentials"}

                before = counts.copy()
                http.post("/api/token", data=form, auth=auth).raise_for_status()
                cold = counts["client"] - before["client"]
                # The change log still names the client just added: once the watcher has
                # applied that (dropping the entry, so one more load), the cache is steady.
                time.sleep(3 * POLL_SECONDS)
                http.post("/api/token", data=form, auth=auth).raise_for_status()

                before = counts.copy()
                started = time.monotonic()
                for _ in range(tokens):
                    http.post("/api/token", data=form, auth=auth).raise_for_status()
                elapsed = time.monotonic() - started
                after = counts.copy()
        finally:
            server.should_exit = True
            thread.join(10)
    return QueryCount(
        cold_client_queries=cold,
        tokens=tokens,
        client_queries=after["client"] - before["client"],
        other_queries=after["other"] - before["other"],
        poll_queries_per_second=(after["poll"] - before["poll"]) / elapsed,
    )
