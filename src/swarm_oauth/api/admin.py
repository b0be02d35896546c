"""The clients role: the admin API that adds, removes, lists and rotates clients."""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api.admin_bodies import (
    ADD,
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    REMOVE,
    REVOKE_TOKENS,
    ROTATE,
    UPDATE,
    Body,
)
from swarm_oauth.bodies import capped_body
from swarm_oauth.clients import IssuedSecret, issued_view, public_record
from swarm_oauth.identifiers import InvalidClientData, validate_client_id
from swarm_oauth.runtime import Runtime
from swarm_oauth.store import ClientRecord, RevocationRecord
from swarm_oauth.tokens.revocation import revoke_client_tokens
from swarm_oauth.web import ApiError, bearer_token

MAX_JSON_BYTES = 65536
_LIMIT = re.compile(r"[0-9]{1,4}")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="swarm-oauth-admin"'}

Endpoint = Callable[[Request], Awaitable[Response]]


def _authorize(runtime: Runtime, request: Request) -> None:
    token = bearer_token(request)
    if token is None:
        raise ApiError(401, "an admin bearer token is required", CHALLENGE)
    assert runtime.admin_token is not None
    if not runtime.admin_token.matches(token):
        raise ApiError(401, "the admin token is not valid", CHALLENGE)


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object body, at most ``MAX_JSON_BYTES``; a 4xx with the reason
    when it is not one (415, 413 or 400)."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    raw = await capped_body(request, MAX_JSON_BYTES)
    try:
        # Decoded first: given bytes, json.loads would also take UTF-16 and UTF-32, where
        # RFC 8259 §8.1 asks for UTF-8 (and lets a parser ignore a byte order mark).
        data = json.loads(raw.decode("utf-8-sig"))
    except ValueError:  # UnicodeDecodeError included
        raise ApiError(400, "the body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


async def _fields(request: Request, body: Body) -> dict[str, Any]:
    """The JSON object body, holding exactly ``body``'s fields (its required ones at least)."""
    data = await json_object(request)
    unknown = sorted(set(data) - set(body.fields))
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(body.required - set(data))
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    return data


def page_cursor(client_id: str) -> str:
    """The opaque cursor of the page that starts after ``client_id``."""
    return base64.urlsafe_b64encode(client_id.encode()).decode().rstrip("=")


def _after(cursor: str | None) -> str | None:
    """The client id a cursor stands for; 400 unless this API could have made it."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return validate_client_id(raw.decode())
    except (binascii.Error, ValueError, InvalidClientData):  # ValueError: not ASCII/UTF-8
        raise ApiError(400, "cursor is not one this API returned (use next_cursor)") from None


def _limit(value: str | None) -> int:
    if value is None:
        return LIST_LIMIT_DEFAULT
    # Four ASCII digits at most: str.isdigit also takes "²", and int() refuses both that
    # and more than 4,300 digits.
    if not _LIMIT.fullmatch(value) or not 1 <= int(value) <= LIST_LIMIT_MAX:
        raise ApiError(400, f"limit must be a whole number from 1 to {LIST_LIMIT_MAX}")
    return int(value)


def admin_routes(runtime: Runtime) -> list[Route]:
    """The ``/api/clients`` routes, each behind the admin token."""
    service = runtime.clients

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def run(request: Request) -> Response:
            _authorize(runtime, request)
            return await endpoint(request)

        run.__doc__ = endpoint.__doc__
        return run

    def write(
        body: Body,
        operation: Callable[..., Any],
        view: Callable[[Any, dict[str, Any]], dict[str, Any]],
        *,
        status: int = 200,
        shows_secret: bool = False,
    ) -> Endpoint:
        """A POST route: the body's fields are ``operation``'s keyword arguments."""

        async def endpoint(request: Request) -> Response:
            data = await _fields(request, body)
            result = await run_in_threadpool(operation, **data)
            # A response that carries a secret must not be kept by any cache on the way.
            headers = {"Cache-Control": "no-store"} if shows_secret else None
            return JSONResponse(view(result, data), status_code=status, headers=headers)

        endpoint.__doc__ = operation.__doc__
        return endpoint

    async def list_clients(request: Request) -> Response:
        """A page of clients, without secrets or hashes, and the cursor of the next."""
        limit = _limit(request.query_params.get("limit"))
        after = _after(request.query_params.get("cursor"))
        # One more than asked tells whether another page follows.
        records = await run_in_threadpool(service.list, limit + 1, after)
        page = records[:limit]
        following = page_cursor(page[-1].client_id) if len(records) > limit else None
        return JSONResponse({"clients": [public_record(r) for r in page], "next_cursor": following})

    async def show(request: Request) -> Response:
        """One client, without secret or hash."""
        record = await run_in_threadpool(service.get, request.path_params["client_id"])
        return JSONResponse(public_record(record))

    def issued(result: IssuedSecret, _: dict[str, Any]) -> dict[str, Any]:
        return issued_view(result)

    def record(result: ClientRecord, _: dict[str, Any]) -> dict[str, Any]:
        return public_record(result)

    def removed(_: None, data: dict[str, Any]) -> dict[str, Any]:
        return {"client_id": data["client_id"], "removed": True}

    def revoke_tokens(client_id: object) -> RevocationRecord:
        """Revoke every token issued to a client until now (e.g. with a leaked secret,
        together with a rotation)."""
        record = revoke_client_tokens(runtime.store, client_id, time.time())
        runtime.note_revocation(record)
        return record

    def revoked(result: RevocationRecord, _: dict[str, Any]) -> dict[str, Any]:
        # Unix time, as `keys list` gives it: the instant matters below the second.
        return {"client_id": result.client_id, "issued_before": result.issued_before}

    post = ["POST"]
    return [
        Route("/api/clients", guarded(list_clients), methods=["GET"]),
        Route(
            "/api/clients/add",
            guarded(write(ADD, service.add, issued, status=201, shows_secret=True)),
            methods=post,
        ),
        Route("/api/clients/remove", guarded(write(REMOVE, service.remove, removed)), methods=post),
        Route(
            "/api/clients/rotate",
            guarded(write(ROTATE, service.rotate, issued, shows_secret=True)),
            methods=post,
        ),
        Route("/api/clients/update", guarded(write(UPDATE, service.update, record)), methods=post),
        Route(
            "/api/clients/revoke-tokens",
            guarded(write(REVOKE_TOKENS, revoke_tokens, revoked)),
            methods=post,
        ),
        Route("/api/clients/{client_id}", guarded(show), methods=["GET"]),
    ]
