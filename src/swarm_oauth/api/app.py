"""The server's ASGI application for a role.

``/api/token`` and ``/api/verify`` are dispatched before the framework (they are the hot
paths); everything else goes through a Starlette router. All sit inside ``Observed`` for
logs and metrics. Both are also offered to the protocol as direct endpoints
(``serving/direct.py``), which answer most token requests and every plain forward-auth
``GET`` without ASGI.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import STARTUP_FAILURE

from swarm_oauth.api.admin import admin_routes
from swarm_oauth.api.discovery import discovery_routes
from swarm_oauth.api.errors import EXCEPTION_HANDLERS
from swarm_oauth.api.forward_auth import VERIFY_PATH, ForwardAuthEndpoint
from swarm_oauth.api.health import health_routes
from swarm_oauth.api.introspection import introspection_routes
from swarm_oauth.api.observe import Observed
from swarm_oauth.api.openapi import openapi_document
from swarm_oauth.api.registration import registration_routes
from swarm_oauth.api.token_endpoint import TokenEndpoint
from swarm_oauth.config import ServerSettings
from swarm_oauth.logs import configure_logging
from swarm_oauth.runtime import STARTUP_ERRORS, Runtime
from swarm_oauth.serving.run import ending_on_signal
from swarm_oauth.store import StoreUnavailable

log = logging.getLogger("swarm_oauth.serving")
# The longest pause between two attempts of a worker waiting for its store.
MAX_STORE_WAIT = 15.0

TOKEN_PATH = "/api/token"


class Dispatch:
    """Sends the hot paths to their bare endpoints and the rest to the router."""

    def __init__(self, endpoints: Mapping[str, ASGIApp], router: ASGIApp) -> None:
        self.endpoints = endpoints
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = self.endpoints.get(scope["path"]) if scope["type"] == "http" else None
        if endpoint is not None:
            scope["swarm_oauth.route"] = scope["path"]
            await endpoint(scope, receive, send)
        else:
            await self.router(scope, receive, send)


def create_app(runtime: Runtime) -> ASGIApp:
    """The ASGI app for ``runtime.settings.role``; other roles' paths are not routed."""
    settings = runtime.settings
    document = openapi_document(
        settings.serves_tokens, settings.serves_clients, settings.issuer_url
    )

    async def openapi(_: Request) -> Response:
        """The OpenAPI document of this role."""
        return JSONResponse(document)

    routes = [*health_routes(runtime), Route("/openapi.json", openapi, methods=["GET"])]
    if settings.serves_tokens:
        routes += discovery_routes(runtime)
        routes += introspection_routes(runtime)
    if settings.serves_clients:
        routes += admin_routes(runtime)
        routes += registration_routes(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        runtime.start()
        # Everything made so far lives as long as the process: the cyclic collector's
        # full passes need not walk it again (they set the token path's tail latency).
        gc.freeze()
        try:
            yield
        finally:
            runtime.close()

    router = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # Starlette would answer /api/clients/add/ with a 307 to an http:// URL built from the
    # Host header, which a client may follow with the form (a secret) in hand.
    router.router.redirect_slashes = False
    if not settings.serves_tokens:
        return Observed(Dispatch({}, router))
    token = TokenEndpoint(runtime)
    verify = ForwardAuthEndpoint(runtime)
    endpoints: dict[str, ASGIApp] = {TOKEN_PATH: token, VERIFY_PATH: verify}
    return Observed(Dispatch(endpoints, router), direct={TOKEN_PATH: token, VERIFY_PATH: verify})


@dataclass(frozen=True)
class WorkerApp:
    """The app factory uvicorn calls in each worker process. uvicorn pickles it to the
    worker over a pipe, so the settings (and any secret in them) never pass through the
    worker's environment or command line."""

    settings: ServerSettings
    # A worker started in place of one that died: see ``_open``.
    replacing: bool = False

    def replacement(self) -> WorkerApp:
        """This factory for the workers started after the first ones."""
        return replace(self, replacing=True)

    def __call__(self) -> ASGIApp:
        configure_logging(self.settings.log_level, self.settings.log_format)
        try:
            runtime = self._open()
        except STARTUP_ERRORS as exc:
            # Raised, it would be a traceback, and uvicorn would start the worker again,
            # forever; this status makes its supervisor stop instead.
            log.error("a worker cannot start: %s", exc)
            sys.exit(STARTUP_FAILURE)
        return create_app(runtime)

    def _open(self) -> Runtime:
        """The runtime. A first worker that cannot reach its store stops the server (a
        crash loop the orchestrator sees); a replacement waits for the store instead,
        while its siblings go on serving what needs no store (the JWKS, tokens of cached
        clients): stopping would turn one worker's crash into the whole server's outage."""
        if not self.replacing:
            return Runtime.open(self.settings)
        delay = 1.0
        with ending_on_signal():
            while True:
                try:
                    return Runtime.open(self.settings)
                except StoreUnavailable as exc:
                    log.warning(
                        "a worker waits for its store: %s",
                        exc,
                        extra={"retry_in_seconds": delay},
                    )
                    time.sleep(delay)
                    delay = min(delay * 2, MAX_STORE_WAIT)
