"""The token server's domain exceptions as JSON error responses (``web``'s one shape)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from swarm_oauth.clients import ClientNotFound, InvalidClientData
from swarm_oauth.identifiers import NO_CLIENT
from swarm_oauth.store import ClientExists, StoreError, StoreRejected, StoreUnavailable
from swarm_oauth.tokens import OAuthError
from swarm_oauth.web import EXCEPTION_HANDLERS as WEB_HANDLERS
from swarm_oauth.web import Handler, error_body, error_response

log = logging.getLogger("swarm_oauth.errors")


async def _invalid(_: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def _not_found(_: Request, exc: Exception) -> Response:
    return error_response(404, NO_CLIENT)


async def _exists(_: Request, exc: Exception) -> Response:
    return error_response(409, "a client with this client_id already exists")


async def _unavailable(request: Request, exc: Exception) -> Response:
    # The caller learns only that it may retry; the operator needs why (a disk full, a
    # database file gone), which no other line may say while reads still succeed.
    log.warning(
        "the store cannot serve a request", extra={"path": request.url.path, "error": str(exc)}
    )
    return error_response(503, "the store cannot be reached; retry later")


async def _rejected(_: Request, exc: Exception) -> Response:
    return error_response(400, "the store cannot hold a value of this request")


async def _store_error(_: Request, exc: Exception) -> Response:
    log.error("the store refused an operation", extra={"error": str(exc)})
    return error_response(500, "the store refused the operation")


async def _oauth_error(_: Request, exc: Exception) -> Response:
    # RFC 6749 §5.2, on the form endpoints beside the token endpoint (which answers its own).
    assert isinstance(exc, OAuthError)
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="swarm-oauth", charset="UTF-8"'
    return JSONResponse(error_body(exc.error, exc.description), exc.status, headers)


EXCEPTION_HANDLERS: dict[Any, Handler] = {
    OAuthError: _oauth_error,
    InvalidClientData: _invalid,
    ClientNotFound: _not_found,
    ClientExists: _exists,
    StoreUnavailable: _unavailable,
    StoreRejected: _rejected,
    StoreError: _store_error,
    **WEB_HANDLERS,
}
