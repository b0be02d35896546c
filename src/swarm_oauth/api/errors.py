"""The token server's domain exceptions as JSON error responses (``web``'s one shape)."""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from swarm_oauth.clients import ClientNotFound, InvalidClientData
from swarm_oauth.store import ClientExists, StoreError, StoreRejected, StoreUnavailable
from swarm_oauth.web import EXCEPTION_HANDLERS as WEB_HANDLERS
from swarm_oauth.web import Handler, error_response

log = logging.getLogger("swarm_oauth.errors")


async def _invalid(_: Request, exc: Exception) -> Response:
    return error_response(400, str(exc))


async def _not_found(_: Request, exc: Exception) -> Response:
    return error_response(404, "no client with this client_id")


async def _exists(_: Request, exc: Exception) -> Response:
    return error_response(409, "a client with this client_id already exists")


async def _unavailable(_: Request, exc: Exception) -> Response:
    return error_response(503, "the store cannot be reached; retry later")


async def _rejected(_: Request, exc: Exception) -> Response:
    return error_response(400, "the store cannot hold a value of this request")


async def _store_error(_: Request, exc: Exception) -> Response:
    log.error("the store refused an operation", extra={"error": str(exc)})
    return error_response(500, "the store refused the operation")


EXCEPTION_HANDLERS: dict[Any, Handler] = {
    InvalidClientData: _invalid,
    ClientNotFound: _not_found,
    ClientExists: _exists,
    StoreUnavailable: _unavailable,
    StoreRejected: _rejected,
    StoreError: _store_error,
    **WEB_HANDLERS,
}
