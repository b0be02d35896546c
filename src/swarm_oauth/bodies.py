"""Reading request bodies with a size cap, for the token server's and the registrar's
HTTP APIs."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.types import Receive

from swarm_oauth.web import ApiError

_LENGTH = re.compile(r"[0-9]{1,18}")


class BodyTooLarge(Exception):
    """The request body exceeds the cap."""


class ClientDisconnected(Exception):
    """The client went away before its body arrived; there is no one to answer."""


def declared_length(value: str | None) -> int | None:
    """The length a ``Content-Length`` value declares, if it is a plain number.

    ASCII digits only, 18 at most: ``str.isdigit`` also takes ``²`` (which ``int``
    refuses) and other scripts' digits (which ``int`` reads), and ``int`` refuses more
    than 4,300 digits."""
    if value is None or not _LENGTH.fullmatch(value):
        return None
    return int(value)


async def read_body(receive: Receive, limit: int, declared: int | None = None) -> bytes:
    """The whole request body, refusing to buffer more than ``limit`` bytes (and refusing
    at once when the declared Content-Length already says so)."""
    if declared is not None and declared > limit:
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


async def capped_body(request: Request, limit: int) -> bytes:
    """The request's whole body; a 413 over ``limit`` bytes, a 400 when it never came."""
    try:
        return await read_body(
            request.receive, limit, declared_length(request.headers.get("content-length"))
        )
    except BodyTooLarge:
        raise ApiError(413, f"the body exceeds {limit} bytes") from None
    except ClientDisconnected:
        raise ApiError(400, "the request body did not arrive") from None
