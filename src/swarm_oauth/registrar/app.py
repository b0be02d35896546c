"""The registrar's HTTP side: the swarm-listener receiver, a forced pass, health, metrics.

swarm-listener sends every parameter in the query string, with GET or POST and an empty
body without a content type (docs/swarm-listener.md). Its notification is only a hint: the
service it names is resolved against Docker into work-queue keys, and the answer is 200
as soon as they are queued, since swarm-listener counts nothing else as delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.admin_token import SharedSecret
from swarm_oauth.bodies import capped_body
from swarm_oauth.identifiers import MAX_GRACE_SECONDS
from swarm_oauth.registrar.controller import Controller
from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.model import is_service_ref
from swarm_oauth.registrar.ports import ClientRegistry, RegistrarError, Swarm
from swarm_oauth.registrar.queue import QueueClosed
from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.status import ServiceStatus, State
from swarm_oauth.web import (
    EXCEPTION_HANDLERS,
    ApiError,
    bearer_token,
    error_response,
    healthz_route,
    metrics_route,
)

logger = logging.getLogger(__name__)

LISTENER_PREFIX = "/v1/swarm-listener"


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="swarm-oauth-registrar"'}
# A rotation's body is at most {"grace_seconds": N}.
MAX_ROTATE_BODY_BYTES = 1024


def _presented(request: Request, *, query: bool) -> str:
    """The bearer token of the request: ``Authorization: Bearer``, or (where a caller
    cannot send headers, like swarm-listener) the ``token`` query parameter."""
    if (token := bearer_token(request)) is not None:
        return token
    if query:
        # With a configured URL carrying its own token, that comes first (docs/swarm-listener.md).
        tokens = request.query_params.getlist("token")
        return tokens[0] if tokens else ""
    return ""


async def _grace(request: Request, default: float) -> float:
    """``grace_seconds`` of a JSON body, if one came; ``ApiError`` when it is malformed."""
    raw = await capped_body(request, MAX_ROTATE_BODY_BYTES)
    if not raw.strip():
        return default
    try:
        body = json.loads(raw.decode("utf-8-sig"))  # UTF-8, a byte order mark ignored
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise ApiError(400, 'the body must be JSON, e.g. {"grace_seconds": 0}') from None
    grace = body.get("grace_seconds", default) if isinstance(body, dict) else None
    if isinstance(grace, bool) or not isinstance(grace, int | float):
        raise ApiError(400, "grace_seconds must be a number of seconds")
    if isinstance(grace, float) and not grace.is_integer():
        raise ApiError(400, "grace_seconds must be a whole number of seconds")
    if not 0 <= grace <= MAX_GRACE_SECONDS:
        raise ApiError(400, f"grace_seconds must be between 0 and {MAX_GRACE_SECONDS}")
    return abs(float(grace))  # -0.0 passes the range check; the answer says 0


def create_app(
    controller: Controller,
    swarm: Swarm,
    registry: ClientRegistry,
    metrics: RegistrarMetrics,
    *,
    admin_token: SharedSecret,
    notify_token: SharedSecret | None = None,
    on_start: Callable[[], None] = lambda: None,
    on_stop: Callable[[], None] = lambda: None,
) -> Starlette:
    """The ASGI app; ``on_start``/``on_stop`` start and stop the background triggers.

    The admin token guards what reads or changes the registrar's records (services,
    reservations); the notify token, when set, guards notifications and forced passes
    (which the admin token may also send).
    """

    def require(request: Request, *secrets: SharedSecret | None, query: bool = False) -> None:
        accepted = [secret for secret in secrets if secret is not None]
        presented = _presented(request, query=query)
        if not presented:
            raise ApiError(401, "a bearer token is required", CHALLENGE)
        if not any(secret.matches(presented) for secret in accepted):
            raise ApiError(401, "the token is not valid", CHALLENGE)

    async def notify(request: Request) -> Response:
        """A swarm-listener create or remove: queue the keys the name resolves to.

        200 once queued (also when it names nothing); 503 only when Docker or the registry
        cannot be read to resolve it, so that swarm-listener tries again.
        """
        if request.method == "HEAD":  # which Starlette adds to every GET route
            raise ApiError(405, "use GET or POST", {"Allow": "GET, POST"})
        if notify_token is not None:
            require(request, notify_token, query=True)
        names = request.query_params.getlist("serviceName")
        # With a configured URL carrying its own serviceName, swarm-listener's comes last.
        name = names[-1].strip() if names else ""
        if not name:
            return error_response(400, "the serviceName query parameter is required")
        if not is_service_ref(name):
            return error_response(
                400,
                "serviceName must be a Docker service name or id: up to 63 letters, "
                "digits, '_', '.' and '-', starting with a letter or digit",
            )
        kind = request.url.path.rsplit("-", 1)[-1]
        try:
            keys = await run_in_threadpool(controller.resolve, name)
        except RegistrarError as exc:
            logger.warning("swarm-listener %s for %s: cannot resolve it: %s", kind, name, exc)
            return error_response(503, "cannot read the swarm right now; retry later")
        controller.enqueue(keys)
        queued = [str(key) for key in keys]
        logger.info(
            "swarm-listener %s for %s: queued %s",
            kind,
            name,
            ", ".join(queued) or "nothing",
            extra={"service": name, "hint": kind, "keys": queued},
        )
        return JSONResponse({"serviceName": name, "queued": queued})

    async def reconcile_all(request: Request) -> Response:
        """Run a full pass (or join the next one) and report how each key ended."""
        if notify_token is not None:
            require(request, notify_token, admin_token)
        try:
            outcomes = await asyncio.wrap_future(controller.full_pass())
        except (RegistrarError, QueueClosed) as exc:
            return error_response(503, str(exc))
        return JSONResponse({"outcomes": {o.value: n for o, n in outcomes.items()}})

    async def services(request: Request) -> Response:
        """Every selected service: its client, state, reason and Docker secret."""
        require(request, admin_token)
        try:
            listed = await run_in_threadpool(swarm.list_services)
        except RegistrarError as exc:
            return error_response(503, f"cannot list the services: {exc}")
        board = controller.board
        entries = []
        for service in sorted(listed, key=lambda s: s.name):
            if not controller.identities.selected(service):
                continue
            known = board.get(service.id)
            if known is None or known.service_name != service.name:
                known = ServiceStatus(
                    service.id, service.name, State.PENDING, reason="not reconciled yet"
                )
            entries.append(known.view())
        return JSONResponse({"services": entries})

    async def reservations(request: Request) -> Response:
        """The client ids kept for removed services, and until when."""
        require(request, admin_token)
        try:
            found = await run_in_threadpool(controller.reservations)
        except RegistrarError as exc:
            return error_response(503, str(exc))
        return JSONResponse(
            {
                "reservations": [
                    {
                        "client_id": r.client_id,
                        "service_name": r.service_name,
                        "until": r.until,
                        "expired": r.until < time.time(),
                    }
                    for r in found
                ]
            }
        )

    async def release(request: Request) -> Response:
        """Free a reserved client id before its reservation ends."""
        require(request, admin_token)
        client_id = request.path_params["client_id"]
        try:
            released = await run_in_threadpool(controller.release, client_id)
        except RegistrarError as exc:
            return error_response(503, str(exc))
        if not released:
            return error_response(404, f"client id {client_id} is not reserved")
        return JSONResponse({"client_id": client_id, "released": True})

    async def rotate(request: Request) -> Response:
        """Rotate a managed service's client secret now; the body may give
        ``grace_seconds`` (0: the old secret stops at once, for a leaked one)."""
        require(request, admin_token)
        name = request.path_params["name"]
        grace = await _grace(request, default=controller.rotation_grace)
        if not is_service_ref(name):
            return error_response(400, "not a Docker service name or id")
        try:
            service = await run_in_threadpool(swarm.get_service, name)
        except RegistrarError as exc:
            return error_response(503, str(exc))
        if service is None:
            return error_response(404, f"no service {name}")
        known = controller.board.get(service.id)
        if (
            not controller.identities.selected(service)
            or known is None
            or not known.state.registered
        ):
            state = known.state.value if known else "not managed"
            return error_response(409, f"service {name} has no identity to rotate ({state})")
        try:
            rolling = grace > 0 and await run_in_threadpool(
                controller.holds_previous_secret, service
            )
        except RegistrarError as exc:
            return error_response(503, str(exc))
        if rolling:
            return error_response(
                409,
                f"tasks of service {name} still run with its previous secret (the last "
                "rotation is rolling out): rotate when they are replaced, or with a grace "
                "of 0 to stop their secret now",
            )
        try:
            outcome = await asyncio.wrap_future(controller.rotate(service, grace))
        except QueueClosed as exc:
            return error_response(503, str(exc))
        if outcome is not Outcome.CHANGED:
            return error_response(503, f"the rotation did not finish ({outcome.value}); retry")
        status = controller.board.get(service.id)
        return JSONResponse(
            {"service": name, "rotated": True, "grace_seconds": grace,
             "secret": status.secret if status else None}
        )  # fmt: skip

    async def problem(what: str, ping: Callable[[], None]) -> str | None:
        """Why ``what`` does not answer, or None when it does."""
        try:
            await run_in_threadpool(ping)
        except RegistrarError as exc:
            return f"{what}: {exc}"
        return None

    async def docker_problem() -> str | None:
        """Alive means Docker answers: without it the registrar can do nothing, and a
        replaced task may reconnect where this one cannot."""
        return await problem("docker", swarm.ping)

    async def readyz(_: Request) -> Response:
        """Docker and the client registry both answer, and the last full pass could list
        what it needs (a ping alone does not say the registrar can work)."""
        reason = None
        for what, ping in (("docker", swarm.ping), ("client registry", registry.ping)):
            reason = reason or await problem(what, ping)
        if reason is None and controller.pass_problem is not None:
            reason = f"the last full pass failed: {controller.pass_problem}"
        if reason is not None:
            logger.warning("not ready: %s", reason)
            metrics.readiness(False)
            return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)
        metrics.readiness(True)
        return JSONResponse({"status": "ready"})

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(on_start)
        try:
            yield
        finally:
            await run_in_threadpool(on_stop)

    both = ["GET", "POST"]
    app = Starlette(
        routes=[
            Route(f"{LISTENER_PREFIX}/notify-create", notify, methods=both),
            Route(f"{LISTENER_PREFIX}/notify-remove", notify, methods=both),
            Route("/v1/reconcile", reconcile_all, methods=["POST"]),
            Route("/v1/services", services, methods=["GET"]),
            Route("/v1/services/{name}/rotate", rotate, methods=["POST"]),
            Route("/v1/reservations", reservations, methods=["GET"]),
            Route("/v1/reservations/{client_id}", release, methods=["DELETE"]),
            healthz_route(docker_problem),
            Route("/readyz", readyz, methods=["GET"]),
            metrics_route(metrics.registry),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # as the token server's (api/app.py)
    return app
