"""uvicorn's httptools protocol with the limits it lacks.

httptools (llhttp) buffers a header of any size and uvicorn neither times out a request
that trickles in nor caps the connections it holds (``limit_concurrency`` answers 503
per request but still accepts and keeps every socket). This subclass adds, per
connection and before the application sees anything:

- the request line and headers together at most ``max_header_bytes``, and at most
  ``max_headers`` header fields: otherwise 431 and the connection is closed;
- the trailer fields after a chunked body discarded (RFC 9110 §6.5.1 allows it), never
  merged into the request's headers, where the application would read them as if the
  head had carried them; their bytes too at most ``max_header_bytes``, or 431 and close;
- every request (head and body) complete within ``request_timeout`` seconds of its first
  byte, or of the connection's opening for the first one: otherwise 408 and close;
- a kept-alive connection closed after uvicorn's ``timeout_keep_alive`` seconds without a
  request, as uvicorn closes it, but by the same one timer per connection instead of a
  timer armed and cancelled around every request;
- at most ``max_connections`` open connections per worker: a connection beyond that
  gets 503 and is closed at once.

It only hooks uvicorn's parser callbacks and calls the originals, so the request path
itself is uvicorn's, except for the plain requests an application's direct endpoints
answer (``direct.py``), which go through the same limits first and are written with the
others of their pass of the event loop (``batch.py``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from swarm_oauth.serving.batch import batch_for
from swarm_oauth.serving.direct import Answer, DirectEndpoint, direct_endpoints, encode, offered
from swarm_oauth.serving.limits import HttpLimits
from swarm_oauth.serving.onewrite import HeadWithBody
from swarm_oauth.web import HTTP_ERROR_CODES, error_body

HEADERS_TOO_LARGE = 431
REQUEST_TIMEOUT = 408
OVERLOADED = 503
# What is fed to the parser at a time while the bytes may be trailer fields.
TRAILER_PIECE = 1024


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection, bounded in what it may make the process hold."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits: HttpLimits = getattr(config, "limits", HttpLimits())
        # Whether the bytes arriving now belong to a request line or headers.
        self._in_head = True
        self._head_bytes = 0
        self._refusal: tuple[int, str] | None = None
        # When the request being read began (loop time), None between requests; when the
        # connection fell idle after an answer, None while anything is under way. One
        # timer per connection checks both, re-armed only when it fires early: arming
        # and cancelling a timer for every request costs more than the request's checks.
        self._started: float | None = None
        self._idle_since: float | None = None
        self._deadline: asyncio.TimerHandle | None = None
        # No timer is armed for longer than this, so no deadline that begins later (an
        # idle spell after a quick answer) falls before the timer fires.
        self._timer_step = min(self.limits.request_timeout, self.timeout_keep_alive)
        self._direct = direct_endpoints(self.app)
        # The direct endpoint of the request being read, if it was offered one, and the
        # body gathered for it (its length is capped before it is offered).
        self._endpoint: DirectEndpoint | None = None
        self._body = b""
        # Where direct answers wait to be written, and whether this connection's does.
        self._batch = batch_for(self.loop)
        self._answering = False
        # Whether the next bytes may be trailer fields (after a chunk-size line, before
        # that chunk's data), and at most how many of them the parser holds: it keeps a
        # field in memory until the field ends.
        self._maybe_trailer = False
        self._trailer_bytes = 0

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Not registered, so the connections being served keep their slots.
            self.transport = transport
            self._refusal = (OVERLOADED, "too many connections; retry shortly")
            self._refuse(extra=b"retry-after: 1\r\n")
            return
        super().connection_made(transport)
        self._started = self.loop.time()
        self._arm(self.limits.request_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # uvicorn closes a connection with no ASGI answer under way at once.
        if self._answering:
            self._batch.flush()
        super().shutdown()

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        # While a head is arriving, feed at most what the cap still allows (plus one
        # byte, to tell "exactly full" from "over"), so llhttp never buffers more. Bytes
        # after a body, in the read that completed it, are fed whole: a head may thus
        # overshoot the cap by at most one read before it is refused.
        limit = self.limits.max_header_bytes
        if self._in_head and self._head_bytes + len(data) <= limit:
            # The usual read: a whole small request, well within the cap.
            self._head_bytes += len(data)
            super().data_received(data)
            if self._refusal is not None:
                self._refuse()
            return
        while data and self._in_head:
            room = limit - self._head_bytes + 1
            piece, data = data[:room], data[room:]
            self._head_bytes += len(piece)
            super().data_received(piece)
            if self._refusal is None and self._in_head and self._head_bytes > limit:
                self._refusal = (HEADERS_TOO_LARGE, "the request headers are too large")
            if self._refusal is not None or self.transport.is_closing():
                break
        else:
            if data:
                self._feed_body(data)
        if self._refusal is not None:
            self._refuse()

    def _feed_body(self, data: bytes) -> None:
        """Feed bytes after a head; those that may be trailer fields within the cap."""
        while data and self._refusal is None and not self.transport.is_closing():
            if not self._maybe_trailer:
                # A last chunk in here may start a trailer: it can overshoot the cap by
                # at most the rest of this read, as a head can.
                super().data_received(data)
                return
            # Small pieces, so that the count stays close: bytes before a chunk's data
            # in the same piece are counted as if they could be a trailer's.
            piece, data = data[:TRAILER_PIECE], data[TRAILER_PIECE:]
            super().data_received(piece)
            if not self._maybe_trailer:
                continue
            self._trailer_bytes += len(piece)  # on_body zeroed it if the piece had data
            if self._trailer_bytes > self.limits.max_header_bytes:
                self._refuse_late((HEADERS_TOO_LARGE, "the request trailer fields are too large"))

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._answering:  # pipelined behind a direct answer: that one goes first
            self._batch.flush()
        # The first request's clock started when the connection opened.
        if self._started is None:
            self._started = self.loop.time()
        if self._deadline is None:
            self._arm(self.limits.request_timeout)
        # A direct answer earlier in this read armed the idle timer (uvicorn cancels it
        # per read): this request, pipelined behind it, is no idleness.
        self._unset_keepalive_if_required()
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_head:
            super().on_header(name, value)
        # else a trailer field, discarded: a credential there must not count as a header.

    def on_chunk_header(self) -> None:
        self._maybe_trailer = True

    def on_chunk_complete(self) -> None:
        self._maybe_trailer = False

    def on_headers_complete(self) -> None:
        self._in_head = False
        # uvicorn's on_header collects every field in ``headers`` (their bytes are capped).
        if len(self.headers) > self.limits.max_headers:
            # The application never sees this request; the body that follows is ignored.
            self._refusal = (HEADERS_TOO_LARGE, "too many request header fields")
            return
        if self.parser.should_upgrade():
            self._decline_upgrade()
            return
        endpoint = self._direct.get(self.url.partition(b"?")[0])
        if endpoint is not None and self._may_answer_directly(endpoint):
            self._endpoint = endpoint
            return
        self._start_cycle()

    def on_body(self, body: bytes) -> None:
        # A chunk with data: what came before it was no trailer.
        self._maybe_trailer, self._trailer_bytes = False, 0
        if self._refusal is not None:
            return
        if self._endpoint is not None:
            self._body += body  # llhttp stops at the Content-Length, within the cap
        else:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refusal is not None:
            return
        self._started = None
        # Whatever arrives next on this connection is the next request's head.
        self._in_head = True
        self._head_bytes = 0
        self._trailer_bytes = 0
        endpoint, body = self._endpoint, self._body
        if endpoint is None:
            super().on_message_complete()
            return
        self._endpoint, self._body = None, b""
        # ``url`` is still this request's: the next one's head resets it.
        # The query as ASGI's query_string has it: without a fragment.
        query = self.url.partition(b"#")[0].partition(b"?")[2]
        answer = endpoint(self.headers, body, query, self.client)
        if answer is None:
            # The application needs to wait for something: the request goes the ASGI
            # way, as if its head and body had only now been read.
            self._start_cycle()
            if body:
                super().on_body(body)
            super().on_message_complete()
            return
        # Read now: llhttp forgets a Connection: close once this callback returns.
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        self._answering = True
        self._batch.add(self, answer, keep_alive)

    def send_direct(self, answer: Answer, keep_alive: bool) -> None:
        """Write a direct answer (the batch calls it once the pass's answers are
        computed) and finish its request as uvicorn finishes one."""
        self._answering = False
        if not self.transport.is_closing():
            self.transport.write(encode(answer, self.server_state.default_headers, keep_alive))
            if not keep_alive:
                self.transport.close()
        self.on_response_complete()

    # -- Upgrade ---------------------------------------------------------------------------

    def _decline_upgrade(self) -> None:
        """Serve a request that asks for another protocol (``Upgrade: h2c`` from
        ``curl --http2``, say) over HTTP/1.1, as RFC 9110 §7.8 lets a server do.

        httptools skips the body of such a request and parses nothing after it, so one
        with a body is refused with a reason instead of reaching the application empty,
        and the connection closes after the answer either way."""
        if _has_body(self.headers):
            self._refusal = (
                400,
                "a request with a body cannot ask to upgrade the connection: "
                "send it without the Upgrade header (HTTP/1.1 is served here)",
            )
            return
        self._start_cycle()
        if self.cycle is not None:
            self.cycle.keep_alive = False

    def _unsupported_upgrade_warning(self) -> None:
        # uvicorn's: it would log every such request, and blame a missing WebSocket
        # library; _decline_upgrade has answered it.
        pass

    # -- the two request paths ---------------------------------------------------------------

    def _may_answer_directly(self, endpoint: DirectEndpoint) -> bool:
        cycle = self.cycle
        return (
            self.parser.get_method() == endpoint.method
            and not self.expect_100_continue
            and not self.parser.should_upgrade()
            # Answers go out in request order: nothing may be ahead of this one.
            and (cycle is None or cycle.response_complete)
            and not self.pipeline
            and not self.flow.write_paused
            and offered(self.headers, endpoint.max_body_bytes)
        )

    def _start_cycle(self) -> None:
        """uvicorn's own handling of a request whose head has been read."""
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = HeadWithBody(cycle, self.transport)

    # -- the read and keep-alive timeouts ----------------------------------------------------

    def on_response_complete(self) -> None:
        # uvicorn's, but an idle connection is left to the connection's timer.
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self._deadline is None:
            self._arm(self.timeout_keep_alive)

    def _unset_keepalive_if_required(self) -> None:
        # uvicorn calls it when bytes arrive and when the connection ends: nothing idles then.
        self._idle_since = None

    def _arm(self, delay: float) -> None:
        self._deadline = self.loop.call_later(min(delay, self._timer_step), self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        now = self.loop.time()
        if self._started is not None:  # a request is arriving
            remaining = self._started + self.limits.request_timeout - now
            if remaining > 0:  # it began after the timer was armed
                self._arm(remaining)
            else:
                self._refuse_late((REQUEST_TIMEOUT, "the request did not arrive in time"))
        elif self._idle_since is not None:  # nothing since the last answer
            remaining = self._idle_since + self.timeout_keep_alive - now
            if remaining > 0:
                self._arm(remaining)
            else:
                self.timeout_keep_alive_handler()
        # else an answer is under way: its end, or the next request, arms the timer again

    # -- refusing ----------------------------------------------------------------------------

    def _refuse_late(self, refusal: tuple[int, str]) -> None:
        """Refuse a request whose body is arriving, unless its answer has begun."""
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            # Too late for a status: the application is answering while the body arrives.
            self.transport.close()
            return
        self._refusal = refusal
        self._refuse()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's, for bytes its parser cannot read: text/plain, where every other
        # refusal here is the API's JSON error.
        self._refuse_late((400, "the request is not valid HTTP/1.1"))

    def _refuse(self, extra: bytes = b"") -> None:
        """Answer the refusal in the API's error shape and close the connection."""
        assert self._refusal is not None
        if self._answering:  # the answer to the request before goes first
            self._batch.flush()
        status, description = self._refusal
        self._disarm()
        if self.transport.is_closing():
            return
        body = json.dumps(
            error_body(HTTP_ERROR_CODES[status], description), separators=(",", ":")
        ).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"connection: close\r\n",
            extra,
            b"\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's head announces a body (a non-zero length, or chunks)."""
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip(b"0")):
            return True
    return False
