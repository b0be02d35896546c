"""Requests the protocol answers itself, without an ASGI task.

An ASGI request costs uvicorn a scope, a request-response cycle, a task, and awaited
``receive`` and ``send`` calls: on the token endpoint that was more than half of a
token's time (``bench/PROFILE.md``). An application may offer, for a few exact paths and
one method each, a *direct endpoint*: a plain function that takes the request's headers,
whole body and query string and returns the whole answer, or ``None`` when it would
have to wait (a store query, a timer, a signature off the event loop). The protocol
tries it once the request has arrived and, on ``None``, hands the same request to the
ASGI application as if it had just been read: the application decides which path
answers, never the client.

An endpoint may also return a ``Later``: the decision is taken, and what is left (a
signature) is computed with the other answers of the event loop's pass, before any of
them is written (``batch.py``).

Only the plainest requests are offered: the endpoint's method, to its exact path in
origin form (``/api/verify?...``, not percent-encoded), a body within the endpoint's cap
given by one ``Content-Length`` or by none (RFC 9112 §6.3: then the body is empty; no
``Transfer-Encoding``), no ``Expect: 100-continue``, no upgrade, nothing pipelined ahead
of it still being answered and the socket taking writes. Anything else takes the ASGI
path unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from uvicorn.protocols.http.httptools_impl import STATUS_LINE

Headers = Sequence[tuple[bytes, bytes]]
# As bodies.declared_length reads a Content-Length: more than any body could have.
MAX_LENGTH_DIGITS = 18


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete response: status, headers (without ``content-length``), body."""

    status: int
    headers: Headers
    body: bytes


# The rest of an answer already decided: called once, soon, on the event loop; it must
# not raise (an exception is answered as a 500).
Later = Callable[[], Answer]


class DirectEndpoint(Protocol):
    """What an application offers the protocol for one path (see the module)."""

    method: bytes
    max_body_bytes: int

    def __call__(
        self, headers: Headers, body: bytes, query: bytes, client: tuple[str, int] | None
    ) -> Answer | Later | None:
        """The answer to ``method`` with these lower-cased ``headers``, ``body`` and raw
        ``query`` string (``b""`` without one) from ``client`` (or what computes it),
        or ``None`` to have the ASGI application answer it instead."""
        ...


def direct_endpoints(app: object) -> Mapping[bytes, DirectEndpoint]:
    """The direct endpoints ``app`` offers, by raw path; none unless it has a
    ``direct_endpoints`` mapping (an app wrapped by uvicorn, as at trace log level,
    offers none and is served as plain ASGI)."""
    endpoints = getattr(app, "direct_endpoints", None)
    return endpoints if isinstance(endpoints, Mapping) else {}


def header_length(value: bytes) -> int | None:
    """The length a raw ``Content-Length`` value declares, if it is a plain number of at
    most 18 digits (``bytes.isdigit`` takes ASCII digits only; llhttp lets through
    thousands of leading zeros, which ``int`` refuses past 4,300 digits)."""
    return int(value) if value.isdigit() and len(value) <= MAX_LENGTH_DIGITS else None


def offered(headers: Headers, max_body_bytes: int) -> bool:
    """Whether a request with these headers is plain enough to be answered directly:
    at most one ``Content-Length``, within the cap, and no ``Transfer-Encoding``."""
    length = None
    for name, value in headers:
        if name == b"content-length":
            if length is not None:
                return False
            length = header_length(value)
            if length is None:  # more digits than a length needs: the general path says
                return False
        elif name == b"transfer-encoding":
            return False
    return length is None or length <= max_body_bytes


def encode(
    answer: Answer, default_headers: Sequence[tuple[bytes, bytes]], keep_alive: bool
) -> bytes:
    """``answer`` on the wire as uvicorn would write it: status line, the server's
    default headers (``date``), the answer's, ``content-length``, and ``connection:
    close`` when the connection ends with it."""
    head = [STATUS_LINE[answer.status]]
    for name, value in (*default_headers, *answer.headers):
        head += [name, b": ", value, b"\r\n"]
    head.append(b"content-length: %d\r\n" % len(answer.body))
    if not keep_alive:
        head.append(b"connection: close\r\n")
    head += [b"\r\n", answer.body]
    return b"".join(head)
