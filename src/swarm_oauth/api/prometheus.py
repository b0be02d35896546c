"""``/metrics`` in Prometheus text format, for any ``prometheus_client`` registry."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def metrics_route(registry: CollectorRegistry, path: str = "/metrics") -> Route:
    """A GET route serving everything ``registry`` collects."""

    async def metrics(_: Request) -> Response:
        """Prometheus text format."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Route(path, metrics, methods=["GET"])
