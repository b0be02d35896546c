"""Direct answers are computed together and then written together, once per pass of the
event loop, without any answer overtaking an earlier one on its connection or being
lost. uvicorn's real protocol on a real event loop; only the sockets are replaced by
transports that record what is written, in one journal for every connection."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest
from uvicorn.server import ServerState

from swarm_oauth.serving.batch import MAX_BATCH, batch_for
from swarm_oauth.serving.direct import Answer, Headers, Later
from swarm_oauth.serving.guard import GuardedHttpToolsProtocol
from swarm_oauth.serving.limits import HttpLimits
from swarm_oauth.serving.run import GuardedConfig
from tests.support.transport import RecordingTransport


class JournalTransport(RecordingTransport):
    """A socket that notes each write in a journal shared by every connection."""

    def __init__(self, journal: list[str], name: str) -> None:
        super().__init__()
        self.journal = journal
        self.name = name

    def write(self, data: Any) -> None:
        super().write(data)
        self.journal.append(f"write {self.name}")


class LaterEndpoint:
    """``POST /later``: the answer is the body, computed later (and noted in the
    journal then); a body of ``fail`` makes the computation raise."""

    method = b"POST"
    max_body_bytes = 64

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    def __call__(
        self, headers: Headers, body: bytes, query: bytes, client: tuple[str, int] | None
    ) -> Later:
        def compute() -> Answer:
            self.journal.append(f"compute {body.decode()}")
            if body == b"fail":
                raise RuntimeError("the computation failed")
            return Answer(200, ((b"content-type", b"text/plain"),), body)

        return compute


class App:
    def __init__(self, journal: list[str]) -> None:
        self.direct_endpoints = {b"/later": LaterEndpoint(journal)}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("every request here is answered directly")


class Server:
    """Connections to one guarded protocol configuration on the running loop."""

    def __init__(self, limits: HttpLimits | None = None) -> None:
        self.journal: list[str] = []
        self.config = GuardedConfig(
            App(self.journal), limits=limits or HttpLimits(), tls=None, lifespan="off"
        )
        self.config.load()
        self.state = ServerState()
        self.state.default_headers = []

    def connect(self, name: str) -> tuple[GuardedHttpToolsProtocol, JournalTransport]:
        protocol = GuardedHttpToolsProtocol(self.config, self.state, {}, asyncio.get_running_loop())
        transport = JournalTransport(self.journal, name)
        protocol.connection_made(transport)
        return protocol, transport


def post(body: bytes, extra: bytes = b"") -> bytes:
    return b"POST /later HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def bodies(transport: RecordingTransport) -> list[bytes]:
    return [write.split(b"\r\n\r\n", 1)[1] for write in transport.writes]


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


def test_the_answers_of_a_pass_are_all_computed_before_any_is_written() -> None:
    async def main() -> list[str]:
        server = Server()
        connections = [server.connect(name) for name in "abc"]
        for name, (protocol, _) in zip("abc", connections, strict=True):
            protocol.data_received(post(name.encode()))
        assert server.journal == []  # nothing is computed while the pass reads
        await turns()
        for name, (_, transport) in zip("abc", connections, strict=True):
            assert bodies(transport) == [name.encode()]
            assert not transport.closed
        assert server.state.total_requests == 3
        return server.journal

    journal = asyncio.run(main())
    assert journal == ["compute a", "compute b", "compute c", "write a", "write b", "write c"]


def test_a_full_batch_is_answered_at_once() -> None:
    """A pass that reads more than a batch holds writes as it goes: no answer waits
    behind more than ``MAX_BATCH`` others."""

    async def main() -> None:
        server = Server()
        connections = [server.connect(str(n)) for n in range(MAX_BATCH + 1)]
        for n, (protocol, _) in enumerate(connections):
            protocol.data_received(post(str(n).encode()))
        writes = [entry for entry in server.journal if entry.startswith("write")]
        assert writes == [f"write {n}" for n in range(MAX_BATCH)]
        await turns()
        assert server.journal[-2:] == [f"compute {MAX_BATCH}", f"write {MAX_BATCH}"]
        assert all(len(transport.writes) == 1 for _, transport in connections)

    asyncio.run(main())


def test_a_request_pipelined_behind_a_waiting_answer_is_answered_after_it() -> None:
    async def main() -> tuple[list[str], list[bytes]]:
        server = Server()
        other, _ = server.connect("other")
        other.data_received(post(b"o"))
        protocol, transport = server.connect("p")
        protocol.data_received(post(b"1") + post(b"2") + post(b"3"))
        await turns()
        return server.journal, bodies(transport)

    journal, answers = asyncio.run(main())
    assert answers == [b"1", b"2", b"3"]
    # Each request behind a waiting answer had the batch flushed first.
    assert journal == [
        "compute o",
        "compute 1",
        "write other",
        "write p",
        "compute 2",
        "write p",
        "compute 3",
        "write p",
    ]


def test_a_failing_computation_is_answered_500_and_the_others_as_usual(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> list[list[bytes]]:
        server = Server()
        connections = [server.connect(name) for name in ("before", "fail", "after")]
        for body, (protocol, _) in zip((b"x", b"fail", b"y"), connections, strict=True):
            protocol.data_received(post(body))
        await turns()
        return [transport.writes for _, transport in connections]

    with caplog.at_level(logging.ERROR, logger="swarm_oauth.errors"):
        before, failed, after = asyncio.run(main())
    assert before[0].endswith(b"\r\n\r\nx") and after[0].endswith(b"\r\n\r\ny")
    (write,) = failed
    assert write.startswith(b"HTTP/1.1 500 Internal Server Error\r\n")
    assert write.endswith(b'{"error":"server_error","error_description":"internal error"}')
    assert [r.getMessage() for r in caplog.records] == ["a direct answer failed"]
    assert "the computation failed" in caplog.text  # the traceback, in the log only


def test_a_shutdown_writes_a_waiting_answer_before_it_closes() -> None:
    async def main() -> JournalTransport:
        server = Server()
        protocol, transport = server.connect("p")
        protocol.data_received(post(b"1"))
        protocol.shutdown()
        assert transport.closed
        return transport

    transport = asyncio.run(main())
    assert bodies(transport) == [b"1"]


def test_an_answer_to_a_closed_connection_is_computed_but_not_written() -> None:
    async def main() -> tuple[list[str], int]:
        server = Server()
        gone, gone_transport = server.connect("gone")
        stays, _ = server.connect("stays")
        gone.data_received(post(b"g"))
        stays.data_received(post(b"s"))
        gone_transport.close()
        gone.connection_lost(None)
        await turns()
        return server.journal, server.state.total_requests

    journal, answered = asyncio.run(main())
    assert journal == ["compute g", "compute s", "write stays"]
    assert answered == 2


@pytest.mark.parametrize(
    "behind",
    [
        pytest.param(post(b"2", b"".join(b"X-%d: y\r\n" % n for n in range(5))), id="fields"),
        # llhttp skips blank lines before a request without starting one.
        pytest.param(b"\r\n" * 2000, id="blank lines"),
    ],
)
def test_a_refusal_behind_a_waiting_answer_follows_it(behind: bytes) -> None:
    """Too many header fields, or more bytes than a head may have, behind a waiting
    answer: that answer goes out, then the 431, then the connection closes."""

    async def main() -> JournalTransport:
        server = Server(HttpLimits(max_headers=3, max_header_bytes=1024))
        protocol, transport = server.connect("p")
        protocol.data_received(post(b"1") + behind)
        await turns()
        return transport

    transport = asyncio.run(main())
    first, refusal = transport.writes
    assert first.endswith(b"\r\n\r\n1")
    assert refusal.startswith(b"HTTP/1.1 431 ")
    assert transport.closed


def test_a_batch_does_not_keep_its_loop_alive() -> None:
    loop = asyncio.new_event_loop()
    assert batch_for(loop) is batch_for(loop)
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
