"""The guarded protocol answers plain requests to an application's direct endpoints
itself, and hands everything else, and whatever such an endpoint declines, to the ASGI
application unchanged. uvicorn's real protocol on a real event loop; only the socket is
replaced by a transport that records what is written."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from swarm_oauth.serving.direct import Answer, Headers
from swarm_oauth.serving.guard import GuardedHttpToolsProtocol
from swarm_oauth.serving.limits import HttpLimits
from swarm_oauth.serving.run import GuardedConfig
from tests.support.transport import RecordingTransport

CAP = 64


class Endpoint:
    """Answers unless the body is ``wait``; remembers the bodies and queries it was
    offered."""

    def __init__(self, method: bytes, max_body_bytes: int) -> None:
        self.method = method
        self.max_body_bytes = max_body_bytes
        self.calls: list[bytes] = []
        self.queries: list[bytes] = []

    def __call__(
        self, headers: Headers, body: bytes, query: bytes, client: tuple[str, int] | None
    ) -> Answer | None:
        self.calls.append(body)
        self.queries.append(query)
        if body == b"wait":
            return None
        return Answer(200, ((b"content-type", b"text/plain"),), b"direct:" + body)


class App:
    """An ASGI app offering ``POST /direct`` (bodies up to ``CAP``) and ``GET /check``
    (no body) to the protocol as ``Endpoint``s; as ASGI it answers with the body it read
    (``/slow`` only once released)."""

    def __init__(self) -> None:
        self.asgi_calls: list[tuple[str, bytes]] = []
        self.endpoint = Endpoint(b"POST", CAP)
        self.check = Endpoint(b"GET", 0)
        self.direct_calls = self.endpoint.calls
        self.release = asyncio.Event()
        self.direct_endpoints = {b"/direct": self.endpoint, b"/check": self.check}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.asgi_calls.append((scope["path"], body))
        if scope["path"] == "/slow":
            await self.release.wait()
        payload = b"asgi:" + body
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(payload))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


class Connection:
    """One client connection to the guarded protocol serving ``App``."""

    def __init__(self, app: App) -> None:
        config = GuardedConfig(app, limits=HttpLimits(), tls=None, lifespan="off")
        config.load()
        state = ServerState()
        state.default_headers = [(b"date", b"Thu, 03 Dec 2026 17:00:00 GMT")]
        self.state = state
        self.protocol = GuardedHttpToolsProtocol(config, state, {}, asyncio.get_running_loop())
        self.transport = RecordingTransport()
        self.protocol.connection_made(self.transport)

    async def send(self, data: bytes, responses: int = 1) -> list[bytes]:
        """Feed ``data``; the writes once ``responses`` responses were written."""
        self.protocol.data_received(data)
        for _ in range(200):
            if sum(w.count(b"HTTP/1.1 ") for w in self.transport.writes) >= responses:
                break
            await asyncio.sleep(0)
        return self.transport.writes


def post(path: bytes, body: bytes, extra: bytes = b"", version: bytes = b"1.1") -> bytes:
    return b"POST %s HTTP/%s\r\nHost: t\r\nContent-Length: %d\r\n%s\r\n%s" % (
        path,
        version,
        len(body),
        extra,
        body,
    )


def run(test: Any) -> Any:
    async def main() -> Any:
        app = App()
        return await test(app, Connection(app))

    return asyncio.run(main())


def test_a_plain_request_is_answered_by_the_endpoint_without_asgi() -> None:
    async def test(app: App, conn: Connection) -> list[bytes]:
        writes = await conn.send(post(b"/direct", b"a=1") + post(b"/direct", b"a=2"), 2)
        assert app.asgi_calls == []
        assert app.direct_calls == [b"a=1", b"a=2"]
        assert conn.state.total_requests == 2
        assert not conn.transport.closed  # kept alive
        return writes

    writes = run(test)
    assert writes == [
        b"HTTP/1.1 200 OK\r\ndate: Thu, 03 Dec 2026 17:00:00 GMT\r\ncontent-type: text/plain\r\n"
        b"content-length: 10\r\n\r\ndirect:a=%d" % n
        for n in (1, 2)
    ]


def test_a_declined_request_reaches_the_app_with_its_whole_body() -> None:
    async def test(app: App, conn: Connection) -> list[bytes]:
        # The body arrives in two reads, after the head.
        conn.protocol.data_received(
            b"POST /direct HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nwa"
        )
        writes = await conn.send(b"it")
        assert app.direct_calls == [b"wait"]
        assert app.asgi_calls == [("/direct", b"wait")]
        return writes

    writes = run(test)
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\nasgi:wait")


def test_the_query_string_and_an_absent_body_are_handed_to_the_endpoint() -> None:
    """The path is matched without the query, which the endpoint gets raw; a request
    without ``Content-Length`` has an empty body (RFC 9112 §6.3), so a ``GET`` to an
    endpoint that takes no body is answered directly too."""

    async def test(app: App, conn: Connection) -> list[bytes]:
        wire = (
            post(b"/direct?x=1&y=%20", b"a=1")
            + b"POST /direct HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"GET /check?scope=read HTTP/1.1\r\nHost: t\r\n\r\n"
            + b"GET /check HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        )
        writes = await conn.send(wire, 4)
        assert app.asgi_calls == []
        assert (app.endpoint.calls, app.endpoint.queries) == ([b"a=1", b""], [b"x=1&y=%20", b""])
        assert (app.check.calls, app.check.queries) == ([b"", b""], [b"scope=read", b""])
        return writes

    writes = run(test)
    assert [w.rsplit(b"\r\n\r\n", 1)[1] for w in writes] == [b"direct:a=1", *[b"direct:"] * 3]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(post(b"/other", b"a=1"), id="another path"),
        pytest.param(post(b"/%64irect", b"a=1"), id="percent-encoded path"),
        pytest.param(post(b"http://t/direct", b"a=1"), id="absolute form"),
        pytest.param(post(b"/direct", b"a" * (CAP + 1)), id="body over the cap"),
        pytest.param(
            b"POST /direct HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\na=1\r\n0\r\n\r\n",
            id="chunked",
        ),
        pytest.param(post(b"/direct", b"a=1", b"Expect: 100-continue\r\n"), id="expect"),
        pytest.param(b"PUT /direct HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\na=1", id="PUT"),
        pytest.param(b"GET /direct HTTP/1.1\r\nHost: t\r\n\r\n", id="GET to a POST endpoint"),
        pytest.param(b"HEAD /check HTTP/1.1\r\nHost: t\r\n\r\n", id="HEAD to a GET endpoint"),
        pytest.param(
            b"GET /check HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
            id="a body where the endpoint takes none",
        ),
    ],
)
def test_anything_but_a_plain_request_goes_to_the_app(request_bytes: bytes) -> None:
    async def test(app: App, conn: Connection) -> list[bytes]:
        writes = await conn.send(request_bytes, 1)
        assert app.direct_calls == app.check.calls == []
        assert len(app.asgi_calls) == 1
        return writes

    writes = run(test)
    assert writes[-1].startswith(b"HTTP/1.1 200 OK\r\n")
    if not request_bytes.startswith(b"HEAD"):  # a HEAD answer has no body
        assert b"asgi:" in writes[-1]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(post(b"/direct", b"a=1", b"Connection: close\r\n"), id="connection close"),
        pytest.param(post(b"/direct", b"a=1", version=b"1.0"), id="HTTP/1.0"),
    ],
)
def test_a_direct_answer_that_ends_the_connection_says_so_and_closes_it(
    request_bytes: bytes,
) -> None:
    async def test(app: App, conn: Connection) -> list[bytes]:
        writes = await conn.send(request_bytes)
        assert app.direct_calls == [b"a=1"]
        assert conn.transport.closed
        return writes

    (write,) = run(test)
    head = write.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert b"connection: close" in head
    assert write.endswith(b"direct:a=1")


def test_a_request_behind_one_still_being_answered_waits_its_turn() -> None:
    """Pipelined: the ASGI request ahead is slow; the plain one behind it must not be
    answered first, so it is queued behind it the ASGI way."""

    async def test(app: App, conn: Connection) -> list[bytes]:
        conn.protocol.data_received(post(b"/slow", b"first") + post(b"/direct", b"second"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert conn.transport.writes == []  # nothing overtook the slow answer
        app.release.set()
        writes = await conn.send(b"", 2)
        assert app.direct_calls == []
        assert app.asgi_calls == [("/slow", b"first"), ("/direct", b"second")]
        return writes

    writes = run(test)
    assert [w.rsplit(b"\r\n\r\n", 1)[1] for w in writes] == [b"asgi:first", b"asgi:second"]


def test_a_socket_not_taking_writes_sends_the_request_the_asgi_way() -> None:
    """A client that does not read its answers: nothing more is written past the socket's
    buffer by the direct path; the answer waits for the drain, as ASGI answers do."""

    async def test(app: App, conn: Connection) -> list[bytes]:
        conn.protocol.pause_writing()
        conn.protocol.data_received(post(b"/direct", b"a=1"))
        for _ in range(20):
            await asyncio.sleep(0)
        assert app.direct_calls == []
        assert app.asgi_calls == [("/direct", b"a=1")]
        assert conn.transport.writes == []
        conn.protocol.resume_writing()
        return await conn.send(b"")

    (write,) = run(test)
    assert write.endswith(b"\r\n\r\nasgi:a=1")


def test_an_app_without_direct_endpoints_is_plain_asgi() -> None:
    async def asgi_only(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main() -> list[bytes]:
        config = GuardedConfig(asgi_only, limits=HttpLimits(), tls=None, lifespan="off")
        config.load()
        protocol = GuardedHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
        transport = RecordingTransport()
        protocol.connection_made(transport)
        protocol.data_received(post(b"/direct", b"a=1"))
        for _ in range(50):
            await asyncio.sleep(0)
        return transport.writes

    (write,) = asyncio.run(main())
    assert write.endswith(b"\r\n\r\nok")
