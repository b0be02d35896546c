"""The registrar's HTTP side: the swarm-listener receiver, a forced pass, health, metrics.

swarm-listener sends every parameter in the query string, with GET or POST and an empty
body without a content type (docs/swarm-listener.md). Its notification is only a hint: the
service it names is resolved against Docker into work-queue keys, and the answer is 200
as soon as they are queued, since swarm-listener counts nothing else as delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.registrar.controller import Controller
from swarm_oauth.registrar.model import is_service_ref
from swarm_oauth.registrar.ports import ClientRegistry, RegistrarError, Swarm
from swarm_oauth.registrar.queue import QueueClosed
from swarm_oauth.web import EXCEPTION_HANDLERS, error_response, healthz_route, metrics_route

logger = logging.getLogger(__name__)

LISTENER_PREFIX = "/v1/swarm-listener"


def create_app(
    controller: Controller,
    swarm: Swarm,
    registry: ClientRegistry,
    metrics: CollectorRegistry,
    *,
    on_start: Callable[[], None] = lambda: None,
    on_stop: Callable[[], None] = lambda: None,
) -> Starlette:
    """The ASGI app; ``on_start``/``on_stop`` start and stop the background triggers."""

    async def notify(request: Request) -> Response:
        """A swarm-listener create or remove: queue the keys the name resolves to.

        200 once queued (also when it names nothing); 503 only when Docker or the registry
        cannot be read to resolve it, so that swarm-listener tries again.
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

    async def reconcile_all(_: Request) -> Response:
        """Run a full pass (or join the next one) and report how each key ended."""
        try:
            outcomes = await asyncio.wrap_future(controller.full_pass())
        except (RegistrarError, QueueClosed) as exc:
            return error_response(503, str(exc))
        return JSONResponse({"outcomes": {o.value: n for o, n in outcomes.items()}})

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
            healthz_route(),
            Route("/readyz", readyz, methods=["GET"]),
            metrics_route(metrics),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
