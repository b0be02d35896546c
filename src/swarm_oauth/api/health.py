"""Liveness, readiness and metrics, served by every role."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api import multiprocess
from swarm_oauth.api.key_metrics import SigningKeyMetrics
from swarm_oauth.api.metrics import REGISTRY, StoreGauges
from swarm_oauth.runtime import Runtime
from swarm_oauth.web import healthz_route, metrics_route


def health_routes(runtime: Runtime) -> list[Route]:
    """``/healthz``, ``/readyz`` and ``/metrics`` (of every worker, when there are several)."""
    runtime.watcher.add_listener(StoreGauges(runtime))

    async def readyz(_: Request) -> Response:
        """The store answers and a signing key is loaded (for roles that sign)."""
        ready, reason = await run_in_threadpool(runtime.ready)
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "reason": reason},
            status_code=200 if ready else 503,
        )

    # The process-wide metrics (every worker's, when there are several), and those of this
    # runtime's keys: every worker computes the same from the store, so this one's serve.
    # One registry per app, so that several apps in one process, as in tests, do not clash.
    registry = CollectorRegistry()
    registry.register(multiprocess.registry() if multiprocess.enabled() else REGISTRY)
    if runtime.settings.serves_tokens:
        registry.register(SigningKeyMetrics(runtime))
    return [
        healthz_route(),
        Route("/readyz", readyz, methods=["GET"]),
        metrics_route(registry),
    ]
