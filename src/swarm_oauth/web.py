"""The HTTP toolkit the token server and the registrar share: one error shape, the JSON
exception handlers, the bearer credential of their admin APIs, and the ``/healthz`` and
``/metrics`` routes.

It imports nothing of the server's domain (store, clients, keys), so the registrar
process, which never touches a store, stays free of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
)
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

log = logging.getLogger("swarm_oauth.errors")

HTTP_ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "request_header_fields_too_large",
    500: "server_error",
    503: "temporarily_unavailable",
}


def error_body(error: str, description: str) -> dict[str, str]:
    """The one error shape of every route: RFC 6749 §5.2's."""
    return {"error": error, "error_description": description}


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, None without one."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def error_response(
    status: int,
    description: str,
    headers: Mapping[str, str] | None = None,
    error: str | None = None,
) -> Response:
    """``{"error", "error_description"}`` with the code ``error``, else derived from the
    status."""
    return JSONResponse(
        error_body(error or HTTP_ERROR_CODES.get(status, "error"), description),
        status_code=status,
        headers=dict(headers) if headers else None,
    )


class ApiError(Exception):
    """A 4xx/5xx with a human-readable reason; the code follows from the status unless
    ``error`` names one (a protocol's own, e.g. RFC 7591's ``invalid_client_metadata``)."""

    def __init__(
        self,
        status: int,
        description: str,
        headers: Mapping[str, str] | None = None,
        *,
        error: str | None = None,
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = headers
        self.error = error


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.description, exc.headers, exc.error)


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette would answer text/plain; the caller gets the JSON shape, the log the rest.
    log.error("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return error_response(500, "internal error")


Handler = Callable[[Request, Exception], Any]

EXCEPTION_HANDLERS: dict[Any, Handler] = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    Exception: _unexpected,
}
"""Handlers every app installs; an app adds its own domain exceptions before ``Exception``."""


Probe = Callable[[], Awaitable[str | None]]
"""What a process needs to be alive: None when it is fine, else the reason it is not."""


def healthz_route(probe: Probe | None = None) -> Route:
    """``GET /healthz``: the process is alive and its event loop answers, and ``probe``
    finds nothing wrong (else ``503`` with its reason), what the image's health check asks.

    The answer names the process, so a client can tell which of several workers answered.
    """

    async def healthz(_: Request) -> Response:
        problem = await probe() if probe is not None else None
        if problem is not None:
            body = {"status": "unhealthy", "reason": problem, "pid": os.getpid()}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    return Route("/healthz", healthz, methods=["GET"])


def metrics_route(registry: CollectorRegistry, path: str = "/metrics") -> Route:
    """A GET route serving everything ``registry`` collects, in Prometheus text format,
    without the ``_created`` series (a timestamp per label set that no rule uses)."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # unannotated upstream

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route(path, metrics, methods=["GET"])
