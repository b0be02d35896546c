"""Responses written straight to ASGI, for the paths that skip the framework."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Send

NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))


async def send_json(
    send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send ``body`` as a complete JSON response."""
    await send_raw_json(send, status, json.dumps(body, separators=(",", ":")).encode(), headers)


async def send_raw_json(
    send: Send, status: int, payload: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send ``payload``, already JSON, as a complete response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
