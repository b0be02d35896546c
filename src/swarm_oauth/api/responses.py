"""Responses for the paths that skip the framework: written to ASGI, or handed whole to
the protocol by a direct endpoint (``serving/direct.py``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from starlette.types import Send

from swarm_oauth.serving.direct import Answer

NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
JSON_TYPE = (b"content-type", b"application/json")


def json_answer(status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> Answer:
    """``body`` as a complete JSON response."""
    return raw_json_answer(status, json.dumps(body, separators=(",", ":")).encode(), headers)


def raw_json_answer(
    status: int, payload: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> Answer:
    """``payload``, already JSON, as a complete response."""
    return Answer(status, (JSON_TYPE, *headers), payload)


async def send_answer(send: Send, answer: Answer) -> None:
    """Send ``answer`` through ASGI."""
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [*answer.headers, (b"content-length", b"%d" % len(answer.body))],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


async def send_json(
    send: Send, status: int, body: Any, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """Send ``body`` as a complete JSON response."""
    await send_answer(send, json_answer(status, body, headers))
