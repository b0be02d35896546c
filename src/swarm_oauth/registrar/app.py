"""The registrar's HTTP side: the swarm-listener receiver, health, metrics, a forced pass.

swarm-listener sends every parameter in the query string, with GET or POST and an empty
body without a content type (``swarm-listener.md``, sections 2 and 9). Its notification
is only a hint: the service it names is re-read from Docker and reconciled as it is.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api.errors import error_response
from swarm_oauth.api.prometheus import metrics_route
from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.model import is_service_ref
from swarm_oauth.registrar.ports import ClientRegistry, RegistrarError, Swarm
from swarm_oauth.registrar.reconcile import Outcome, Reconciler

logger = logging.getLogger(__name__)

LISTENER_PREFIX = "/v1/swarm-listener"


def create_app(
    reconciler: Reconciler,
    swarm: Swarm,
    registry: ClientRegistry,
    metrics: RegistrarMetrics,
    *,
    on_start: Callable[[], None] = lambda: None,
    on_stop: Callable[[], None] = lambda: None,
) -> Starlette:
    """The ASGI app; ``on_start``/``on_stop`` start and stop the background triggers."""

    async def notify(request: Request) -> Response:
        """A swarm-listener create or remove: reconcile the named service, then answer.

        200 once reconciled (also when there was nothing to do), 503 only when a
        transient failure makes a retry worthwhile.
        """
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
        outcome = await run_in_threadpool(reconciler.reconcile_service, name)
        logger.info(
            "swarm-listener %s for %s: %s",
            kind,
            name,
            outcome.value,
            extra={"service": name, "hint": kind, "outcome": outcome.value},
        )
        if outcome is Outcome.RETRY:
            return error_response(503, "transient failure; retry later")
        return JSONResponse({"serviceName": name, "outcome": outcome.value})

    async def reconcile_all(_: Request) -> Response:
        """Run a full pass now and report how each service ended."""
        try:
            outcomes = await run_in_threadpool(reconciler.full_pass)
        except RegistrarError as exc:
            return error_response(503, str(exc))
        return JSONResponse({"outcomes": {o.value: n for o, n in outcomes.items()}})

    async def healthz(_: Request) -> Response:
        """The process is alive."""
        return JSONResponse({"status": "ok"})

    async def readyz(_: Request) -> Response:
        """Docker and the clients API both answer."""
        for what, check in (("docker", swarm.ping), ("clients API", registry.ping)):
            try:
                await run_in_threadpool(check)
            except RegistrarError as exc:
                logger.warning("not ready: %s: %s", what, exc)
                return JSONResponse(
                    {"status": "not ready", "reason": f"{what}: {exc}"}, status_code=503
                )
        return JSONResponse({"status": "ready"})

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}) or None)

    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette would answer text/plain; the caller gets the JSON shape, the log the rest.
        logger.error("unhandled error", extra={"path": request.url.path}, exc_info=exc)
        return error_response(500, "internal error")

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(on_start)
        try:
            yield
        finally:
            await run_in_threadpool(on_stop)

    both = ["GET", "POST"]
    return Starlette(
        routes=[
            Route(f"{LISTENER_PREFIX}/notify-create", notify, methods=both),
            Route(f"{LISTENER_PREFIX}/notify-remove", notify, methods=both),
            Route("/v1/reconcile", reconcile_all, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            metrics_route(metrics.registry),
        ],
        exception_handlers={HTTPException: http_error, Exception: unexpected},
        lifespan=lifespan,
    )
