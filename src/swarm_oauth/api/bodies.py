"""Reading request bodies with a size cap, for the token endpoint and the clients API."""

from __future__ import annotations

from starlette.types import Receive


class BodyTooLarge(Exception):
    """The request body exceeds the cap."""


class ClientDisconnected(Exception):
    """The client went away before its body arrived; there is no one to answer."""


async def read_body(receive: Receive, limit: int, declared_length: int | None = None) -> bytes:
    """The whole request body, refusing to buffer more than ``limit`` bytes (and refusing
    at once when the declared Content-Length already says so)."""
    if declared_length is not None and declared_length > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
