"""A token endpoint name that lists a dead replica first, against a real token server.

A swarm service in ``endpoint_mode: dnsrr`` resolves to each replica; when a replica's
node dies its address answers nothing until the swarm drops it from DNS. Here the name
``tokens.test`` resolves to such an address (a listener whose accept queue is full, so its
SYNs go unanswered) and then to the real server, on the same port.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarm_oauth.sdk import TokenSource
from tests.support.server import ServerProcess


@pytest.fixture
def endpoint(token_server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    silent = socket.socket()
    silent.bind(("127.0.0.2", token_server.port))
    silent.listen(0)
    filler = socket.create_connection(silent.getsockname(), timeout=1)
    real = socket.getaddrinfo

    def resolve(host: str | bytes, port: int, *args: object, **kwargs: object) -> list[object]:
        if host not in ("tokens.test", b"tokens.test"):  # anyio passes it IDNA-encoded
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))
            for ip in ("127.0.0.2", "127.0.0.1")
        ]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    yield f"http://tokens.test:{token_server.port}/api/token"
    filler.close()
    silent.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_dead_replica_listed_first_costs_a_caller_a_quarter_second(
    token_server: ServerProcess, endpoint: str, tmp_path: Path, mode: str
) -> None:
    secret = token_server.add_client("orders")["client_secret"]
    (tmp_path / "secret").write_text(secret)
    source = TokenSource("orders", endpoint, client_secret_file=tmp_path / "secret", timeout=2.0)
    start = time.monotonic()
    token = source.token() if mode == "sync" else asyncio.run(source.atoken())
    took = time.monotonic() - start
    assert token.count(".") == 2
    # Each attempt on the dead address once took the whole timeout, and the token
    # arrived past it: the sync caller failed whenever DNS listed that address first.
    assert took < 1.0, f"{mode}: {took:.2f} s for a token"
