"""The clients role: the admin API that adds, removes, lists and rotates clients."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api.bodies import BodyTooLarge, ClientDisconnected, read_body
from swarm_oauth.api.errors import ApiError
from swarm_oauth.clients import issued_view, public_record
from swarm_oauth.runtime import Runtime

MAX_JSON_BYTES = 65536
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="swarm-oauth-admin"'}

Endpoint = Callable[[Request], Awaitable[Response]]


def _authorize(runtime: Runtime, request: Request) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "an admin bearer token is required", CHALLENGE)
    assert runtime.admin_token is not None
    if not runtime.admin_token.matches(token.strip()):
        raise ApiError(401, "the admin token is not valid", CHALLENGE)


async def _json_object(request: Request, allowed: set[str], required: set[str]) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "Content-Type must be application/json")
    declared = request.headers.get("content-length", "")
    try:
        body = await read_body(
            request.receive, MAX_JSON_BYTES, int(declared) if declared.isdigit() else None
        )
    except BodyTooLarge:
        raise ApiError(413, f"the body exceeds {MAX_JSON_BYTES} bytes") from None
    except ClientDisconnected:
        raise ApiError(400, "the request body did not arrive") from None
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ApiError(400, "the body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(required - set(data))
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    return data


def admin_routes(runtime: Runtime) -> list[Route]:
    """The ``/api/clients`` routes, each behind the admin token."""
    service = runtime.clients

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def run(request: Request) -> Response:
            _authorize(runtime, request)
            return await endpoint(request)

        run.__doc__ = endpoint.__doc__
        return run

    async def add(request: Request) -> Response:
        """Register a client; its secret is in this response and nowhere else, ever."""
        data = await _json_object(
            request, {"client_id", "scopes", "audiences", "metadata"}, {"client_id"}
        )
        issued = await run_in_threadpool(
            service.add,
            data["client_id"],
            data.get("scopes"),
            data.get("audiences"),
            data.get("metadata"),
        )
        return JSONResponse(
            issued_view(issued), status_code=201, headers={"Cache-Control": "no-store"}
        )

    async def remove(request: Request) -> Response:
        """Delete a client; every token server refuses it within a second."""
        data = await _json_object(request, {"client_id"}, {"client_id"})
        await run_in_threadpool(service.remove, data["client_id"])
        return JSONResponse({"client_id": data["client_id"], "removed": True})

    async def rotate(request: Request) -> Response:
        """Give a client a new secret; the old one works ``grace_seconds`` longer."""
        data = await _json_object(request, {"client_id", "grace_seconds"}, {"client_id"})
        issued = await run_in_threadpool(
            service.rotate, data["client_id"], data.get("grace_seconds", 0)
        )
        return JSONResponse(issued_view(issued), headers={"Cache-Control": "no-store"})

    async def update(request: Request) -> Response:
        """Change a client's scopes, audiences or metadata; its secret stays."""
        data = await _json_object(
            request, {"client_id", "scopes", "audiences", "metadata"}, {"client_id"}
        )
        record = await run_in_threadpool(
            service.update,
            data["client_id"],
            data.get("scopes"),
            data.get("audiences"),
            data.get("metadata"),
        )
        return JSONResponse(public_record(record))

    async def list_clients(request: Request) -> Response:
        """Every client, without secrets or hashes."""
        records = await run_in_threadpool(service.list)
        return JSONResponse({"clients": [public_record(r) for r in records]})

    async def show(request: Request) -> Response:
        """One client, without secret or hash."""
        record = await run_in_threadpool(service.get, request.path_params["client_id"])
        return JSONResponse(public_record(record))

    return [
        Route("/api/clients", guarded(list_clients), methods=["GET"]),
        Route("/api/clients/add", guarded(add), methods=["POST"]),
        Route("/api/clients/remove", guarded(remove), methods=["POST"]),
        Route("/api/clients/rotate", guarded(rotate), methods=["POST"]),
        Route("/api/clients/update", guarded(update), methods=["POST"]),
        Route("/api/clients/{client_id}", guarded(show), methods=["GET"]),
    ]
