"""The guarded protocol writes a response's head and body in one write, and only when a
body with a declared length will follow. The protocol is uvicorn's real one, on a real
event loop; only the socket is replaced by a transport that records what is written."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from swarm_oauth.serving.guard import GuardedHttpToolsProtocol
from swarm_oauth.serving.limits import HttpLimits
from swarm_oauth.serving.run import GuardedConfig
from tests.support.transport import RecordingTransport

BODY = b'{"access_token":"x"}'


async def fixed_length(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


async def streamed(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def exchange(app: Any, request: bytes) -> list[bytes]:
    """Feed ``request`` to a connected protocol and return its writes once the app ran."""
    config = GuardedConfig(app, limits=HttpLimits(), tls=None, lifespan="off")
    config.load()
    protocol = GuardedHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    transport = RecordingTransport()
    protocol.connection_made(transport)
    protocol.data_received(request)
    for _ in range(100):
        cycle = protocol.cycle
        if cycle is not None and cycle.response_complete:
            break
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport.writes


def test_a_response_of_declared_length_is_one_write() -> None:
    request = b"POST /api/token HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nab"
    writes = asyncio.run(exchange(fixed_length, request))
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n" + BODY)


def test_a_streamed_response_sends_its_head_at_once() -> None:
    writes = asyncio.run(exchange(streamed, b"GET /events HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"transfer-encoding: chunked" in writes[0]
    assert writes[1:] == [b"4\r\npart\r\n", b"0\r\n\r\n"]


def test_a_head_request_gets_its_head_although_no_body_follows() -> None:
    writes = asyncio.run(exchange(fixed_length, b"HEAD /api/token HTTP/1.1\r\nHost: t\r\n\r\n"))
    assert len(writes) == 1
    assert writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[0].endswith(b"\r\n\r\n")


def test_an_interim_continue_goes_out_before_the_body_is_read() -> None:
    request = (
        b"POST /api/token HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        b"Content-Length: 2\r\n\r\nab"
    )
    writes = asyncio.run(exchange(fixed_length, request))
    assert writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert len(writes) == 2
    assert writes[1].startswith(b"HTTP/1.1 200 OK\r\n")
    assert writes[1].endswith(BODY)
