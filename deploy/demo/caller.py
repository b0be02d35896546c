"""Demo caller: calls the callee every few seconds with its own swarm-oauth identity.

The registrar gives this service OAUTH_CLIENT_ID, OAUTH_TOKEN_URL and the secret file;
TokenSource turns them into access tokens (for the audience in OAUTH_AUDIENCE) and
BearerAuth sends them. GET / answers the last outcome as JSON, and each outcome is
printed to the log.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from swarm_oauth.sdk import BearerAuth, ConfigurationError, SwarmOAuthError, TokenSource

CALLEE_URL = os.environ.get("CALLEE_URL", "http://callee:8080/")
INTERVAL = float(os.environ.get("CALL_INTERVAL", "2"))

last: dict[str, Any] = {"outcome": "starting"}


def record(**outcome: Any) -> None:
    """Keep the outcome for GET / and print it, one JSON line."""
    last.clear()
    last.update(outcome, at=time.time())
    print(json.dumps(last), flush=True)


async def call_forever() -> None:
    """Call the callee every INTERVAL seconds and record what happened."""
    try:
        source = TokenSource.from_env()
    except ConfigurationError as exc:
        # The first task starts before the registrar has given the service its identity;
        # the registrar's update then replaces this task with one that has it.
        record(outcome="no identity yet", detail=str(exc))
        return
    async with httpx.AsyncClient(auth=BearerAuth(source), timeout=5) as client:
        while True:
            try:
                response = await client.get(CALLEE_URL)
                body = response.json() if response.content else None
                outcome = "called" if response.status_code == 200 else "refused"
                record(outcome=outcome, status=response.status_code, callee=body)
            except (httpx.HTTPError, SwarmOAuthError, ValueError) as exc:
                record(outcome="failed", detail=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(INTERVAL)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Run the calling loop for as long as the app runs."""
    task = asyncio.create_task(call_forever())
    yield
    task.cancel()


async def show_last(request: Request) -> JSONResponse:
    """The last outcome of calling the callee."""
    return JSONResponse(last)


async def healthz(request: Request) -> JSONResponse:
    """Alive (the image's health check asks for this)."""
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/", show_last), Route("/healthz", healthz)], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=int(os.environ.get("SWARM_OAUTH_PORT", "8080")))
