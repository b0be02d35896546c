"""Dynamic client registration over HTTP: the RFC 7591 registration endpoint, behind the
admin token as its initial access token, and the RFC 7592 client configuration endpoint,
behind each client's registration access token. Served by the clients role."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api.admin import json_object
from swarm_oauth.clients.registration import (
    InvalidClientMetadata,
    InvalidRegistrationToken,
    RegistrationService,
    client_information,
)
from swarm_oauth.runtime import Runtime
from swarm_oauth.web import ApiError, bearer_token

REGISTER_PATH = "/api/register"
CONFIGURATION_PATH = REGISTER_PATH + "/{client_id}"
# Every answer that carries a secret or a token (RFC 7591 §3.2.1, RFC 7592 §3).
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
REALM = 'Bearer realm="swarm-oauth-registration"'

T = TypeVar("T")


def _refused(description: str, *, presented: bool = True) -> ApiError:
    # RFC 6750 §3.1: a request that carried no token at all gets no error code.
    challenge = f'{REALM}, error="invalid_token"' if presented else REALM
    return ApiError(401, description, {"WWW-Authenticate": challenge}, error="invalid_token")


def _token(request: Request) -> str:
    token = bearer_token(request)
    if token is None:
        raise _refused("a bearer token is required", presented=False)
    return token


async def _run(operation: Callable[..., T], *args: Any) -> T:
    """``operation`` in a worker thread, its refusals as RFC 7591/7592 error answers."""
    try:
        return await run_in_threadpool(operation, *args)
    except InvalidRegistrationToken:
        # The same answer whether the client is unknown or the token wrong (RFC 7592 §2).
        raise _refused("the registration access token is not valid for this client") from None
    except InvalidClientMetadata as exc:
        raise ApiError(400, str(exc), error=exc.error) from None


def registration_routes(runtime: Runtime) -> list[Route]:
    """``POST /api/register`` and ``GET|PUT|DELETE /api/register/{client_id}``."""
    service = RegistrationService(runtime.clients)
    settings = runtime.settings
    admin_token = runtime.admin_token
    assert admin_token is not None  # the clients role always has one

    def configuration_uri(request: Request, client_id: str) -> str:
        # In the all role this process is the issuer, and its public URL is the one to
        # give out (behind a proxy that terminates TLS the request itself says http). The
        # clients role's issuer names the tokens role, elsewhere: the URL this request
        # came in by is the one that reaches this process.
        base = settings.issuer_url if settings.serves_tokens else str(request.base_url)
        return f"{base.rstrip('/')}{REGISTER_PATH}/{client_id}"

    async def register(request: Request) -> Response:
        """Register a client (RFC 7591 §3); its secret and access token are shown once."""
        if not admin_token.matches(_token(request)):
            raise _refused("the initial access token is not valid")
        body = await json_object(request)
        registration = await _run(service.register, body)
        record = registration.issued.record
        info = client_information(
            record,
            access_token=registration.access_token,
            configuration_uri=configuration_uri(request, record.client_id),
            secret=registration.issued.secret,
        )
        return JSONResponse(info, status_code=201, headers=NO_STORE)

    async def configure(request: Request) -> Response:
        """Read, replace or delete a client with its registration access token (RFC 7592)."""
        client_id = request.path_params["client_id"]
        token = _token(request)
        if request.method == "DELETE":
            await _run(service.delete, client_id, token)
            return Response(status_code=204)
        # Authenticated before the body is even read: a wrong token is a 401 whatever it sent.
        record = await _run(service.read, client_id, token)
        if request.method == "PUT":
            record = await _run(service.replace, client_id, token, await json_object(request))
        info = client_information(
            record, access_token=token, configuration_uri=configuration_uri(request, client_id)
        )
        return JSONResponse(info, headers=NO_STORE)

    return [
        Route(REGISTER_PATH, register, methods=["POST"]),
        Route(CONFIGURATION_PATH, configure, methods=["GET", "PUT", "DELETE"]),
    ]
