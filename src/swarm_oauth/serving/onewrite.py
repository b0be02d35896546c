"""A response's head and its body in one socket write.

uvicorn writes the status line and headers as soon as the app sends
``http.response.start``, and the body when ``http.response.body`` follows: two
``send()`` calls and two TCP segments for every response, where the token endpoint's
whole answer fits one. Holding the head until the body comes saves a system call per
request (on loopback the sender also pays the receiver's TCP processing).

Only a head whose length is declared (``Content-Length``, so uvicorn writes the body
as is) and that a body will follow (not a ``HEAD`` request, whose body uvicorn drops)
is held; anything else passes straight through.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import RequestResponseCycle


class HeadWithBody(asyncio.Transport):
    """The transport one request's cycle writes through (it only writes, asks whether
    the connection is closing, and closes it)."""

    __slots__ = ("_cycle", "_head", "_transport", "_waiting")

    def __init__(self, cycle: RequestResponseCycle, transport: asyncio.Transport) -> None:
        super().__init__()
        self._cycle = cycle
        self._transport = transport
        self._head: bytes | None = None
        self._waiting = cycle.scope["method"] != "HEAD"

    def write(self, data: bytes | bytearray | memoryview) -> None:
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        elif self._waiting and self._cycle.response_started:
            # The first write once the response started is its head; an earlier one is
            # an interim "100 Continue", which must go out at once.
            self._waiting = False
            if self._cycle.chunked_encoding is False:
                self._head = bytes(data)
                return
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()
