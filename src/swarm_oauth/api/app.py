"""The server's ASGI application for a role.

``/api/token`` is dispatched before the framework (it is the hot path); everything else
goes through a Starlette router. Both sit inside ``Observed`` for logs and metrics.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from swarm_oauth.api.admin import admin_routes
from swarm_oauth.api.discovery import discovery_routes
from swarm_oauth.api.errors import EXCEPTION_HANDLERS
from swarm_oauth.api.health import health_routes
from swarm_oauth.api.observe import Observed
from swarm_oauth.api.openapi import openapi_document
from swarm_oauth.api.registration import registration_routes
from swarm_oauth.api.token_endpoint import TokenEndpoint
from swarm_oauth.config import SETTINGS_ENV, ServerSettings
from swarm_oauth.logs import configure_logging
from swarm_oauth.runtime import Runtime

TOKEN_PATH = "/api/token"


class Dispatch:
    """Sends the token path to its bare endpoint and the rest to the router."""

    def __init__(self, token_endpoint: TokenEndpoint | None, router: ASGIApp) -> None:
        self.token_endpoint = token_endpoint
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token_endpoint is not None
            and scope["type"] == "http"
            and scope["path"] == TOKEN_PATH
        ):
            scope["swarm_oauth.route"] = TOKEN_PATH
            await self.token_endpoint(scope, receive, send)
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
    if settings.serves_clients:
        routes += admin_routes(runtime)
        routes += registration_routes(runtime)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        runtime.start()
        try:
            yield
        finally:
            runtime.close()

    router = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    endpoint = TokenEndpoint(runtime) if settings.serves_tokens else None
    return Observed(Dispatch(endpoint, router))


def app_from_env() -> ASGIApp:
    """Factory for uvicorn worker processes: settings come from ``SWARM_OAUTH_SETTINGS_JSON``."""
    settings = ServerSettings.from_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level, settings.log_format)
    return create_app(Runtime.open(settings))
