"""Domain exceptions to JSON error responses, in the shape every route shares."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from swarm_oauth.api.responses import error_body
from swarm_oauth.clients import ClientNotFound, InvalidClientData
from swarm_oauth.store import ClientExists, StoreError, StoreUnavailable

log = logging.getLogger("swarm_oauth.errors")

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    500: "server_error",
    503: "temporarily_unavailable",
}


class ApiError(Exception):
    """A 4xx/5xx with a machine-readable code and a human-readable reason."""

    def __init__(
        self, status: int, description: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.headers = headers


def error_response(
    status: int, description: str, headers: dict[str, str] | None = None
) -> Response:
    """``{"error", "error_description"}`` with the code derived from the status."""
    return JSONResponse(
        error_body(_HTTP_CODES.get(status, "error"), description),
        status_code=status,
        headers=headers,
    )


async def _api_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.description, exc.headers)


async def _http_exception(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, exc.detail, dict(exc.headers or {}) or None)


async def _invalid(_: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def _not_found(_: Request, exc: Exception) -> Response:
    return error_response(404, "no client with this client_id")


async def _exists(_: Request, exc: Exception) -> Response:
    return error_response(409, "a client with this client_id already exists")


async def _unavailable(_: Request, exc: Exception) -> Response:
    return error_response(503, "the store cannot be reached; retry later")


async def _store_error(_: Request, exc: Exception) -> Response:
    log.error("the store refused an operation", extra={"error": str(exc)})
    return error_response(500, "the store refused the operation")


async def _unexpected(request: Request, exc: Exception) -> Response:
    # Starlette would answer text/plain; the caller gets the JSON shape, the log the rest.
    log.error("unhandled error", extra={"path": request.url.path}, exc_info=exc)
    return error_response(500, "internal error")


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    HTTPException: _http_exception,
    InvalidClientData: _invalid,
    ClientNotFound: _not_found,
    ClientExists: _exists,
    StoreUnavailable: _unavailable,
    StoreError: _store_error,
    Exception: _unexpected,
}
