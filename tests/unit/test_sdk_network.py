"""Staggered connects on real loopback sockets.

A listener with a full accept queue (``listen(0)`` and one connection it never accepts)
drops further SYNs, so a connect to it gets no answer at all: a replica whose node died.
A port nothing listens on refuses at once.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from swarm_oauth.sdk._network import (
    ATTEMPT_DELAY,
    connect_staggered,
    interleaved,
    stagger_connects,
)


def address(host: str, port: int) -> tuple[int, int, int, tuple[str, int]]:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, (host, port))


@pytest.fixture
def live() -> Iterator[tuple[str, int]]:
    listener = socket.socket()
    listener.bind(("127.0.0.3", 0))
    listener.listen(8)
    yield listener.getsockname()
    listener.close()


@pytest.fixture
def silent(live: tuple[str, int]) -> Iterator[tuple[str, int]]:
    """An address whose SYNs go unanswered, on the live listener's port."""
    listener = socket.socket()
    listener.bind(("127.0.0.2", live[1]))
    listener.listen(0)
    filler = socket.create_connection(listener.getsockname(), timeout=1)
    yield listener.getsockname()
    filler.close()
    listener.close()


def refusing() -> tuple[str, int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.4", 0))
        return sock.getsockname()  # type: ignore[no-any-return]


def test_a_silent_address_costs_the_attempt_delay_not_the_timeout(
    silent: tuple[str, int], live: tuple[str, int]
) -> None:
    start = time.monotonic()
    sock = connect_staggered([address(*silent), address(*live)], timeout=5.0)
    took = time.monotonic() - start
    with sock:
        assert sock.getpeername() == live
        assert sock.getblocking()
    assert ATTEMPT_DELAY <= took < 1.0


def test_a_refused_address_moves_on_at_once(live: tuple[str, int]) -> None:
    start = time.monotonic()
    with connect_staggered([address(*refusing()), address(*live)], timeout=5.0) as sock:
        assert sock.getpeername() == live
    assert time.monotonic() - start < ATTEMPT_DELAY


def test_the_timeout_bounds_every_attempt_together(silent: tuple[str, int]) -> None:
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        connect_staggered([address(*silent)] * 3, timeout=0.6)
    assert 0.6 <= time.monotonic() - start < 1.5


def test_when_every_address_refuses_the_error_says_so() -> None:
    with pytest.raises(ConnectionRefusedError):
        connect_staggered([address(*refusing()), address(*refusing())], timeout=5.0)


def test_families_alternate_in_the_resolvers_order() -> None:
    v6 = [(socket.AF_INET6, 1, 6, "", (f"::{n}", 80, 0, 0)) for n in (1, 2, 3)]
    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{n}", 80)) for n in (1, 2)]
    order = [sockaddr[0] for _, _, _, sockaddr in interleaved([*v6, *v4])]
    assert order == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]


def test_an_sdk_client_connects_staggered_past_a_silent_address(
    silent: tuple[str, int], live: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A name resolving to the silent address first, as a dnsrr service name may.
    real = socket.getaddrinfo

    def resolve(host: str, port: int, *args: object, **kwargs: object) -> list[object]:
        if host != "replicas.test":
            return real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        return [(family, kind, proto, "", addr) for family, kind, proto, addr in targets]

    targets = [address(*silent), address(*live)]
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with stagger_connects(httpx.Client(timeout=2.0)) as client:
        start = time.monotonic()
        with pytest.raises(httpx.ReadTimeout):
            # The live listener accepts and never answers; the connect is what counts.
            client.get(f"http://replicas.test:{live[1]}/", timeout=httpx.Timeout(2.0, read=0.1))
        assert ATTEMPT_DELAY <= time.monotonic() - start < 1.0
