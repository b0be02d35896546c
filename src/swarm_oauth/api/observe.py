"""Access log and request metrics around any ASGI app, without buffering responses."""

from __future__ import annotations

import logging
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm_oauth.api.metrics import HTTP_DURATION, HTTP_REQUESTS
from swarm_oauth.api.responses import send_json
from swarm_oauth.logs import HotLog
from swarm_oauth.web import error_body

access_log = logging.getLogger("swarm_oauth.access")
_log_request = HotLog(access_log)
error_log = logging.getLogger("swarm_oauth.errors")

LOG_FIELDS = "swarm_oauth.log"


def log_field(scope: Scope, name: str, value: object) -> None:
    """Add ``name=value`` to the request's access log line (e.g. the client id and the
    OAuth error of a token request)."""
    scope.setdefault(LOG_FIELDS, {})[name] = value


def route_label(scope: Scope) -> str:
    """The route template (``/api/clients/{client_id}``), never the raw path, so that
    metric labels stay few and no client id or token ends up in a label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return str(scope.get("swarm_oauth.route", "unmatched"))


class Observed:
    """Logs one line and counts each HTTP request; turns an unexpected exception into a
    plain 500 so no traceback reaches the caller. The query string is never logged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # prometheus_client's labels() costs a lookup under a lock; the label sets are
        # few (routes x methods x statuses), so their children are kept here.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def observing_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        except Exception:
            if not status:  # otherwise the router's own handler answered and logged it
                error_log.exception("unhandled error", extra={"path": scope["path"]})
                status = 500
                await send_json(send, 500, error_body("server_error", "internal error"))
        finally:
            elapsed = time.perf_counter() - started
            route = route_label(scope)
            key = (route, scope["method"], status)
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = HTTP_REQUESTS.labels(route, key[1], str(status))
            counter.inc()
            timer = self._timers.get(route)
            if timer is None:
                timer = self._timers[route] = HTTP_DURATION.labels(route)
            timer.observe(elapsed)
            client = scope.get("client")
            _log_request(
                "request",
                {
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "remote": client[0] if client else None,
                    **scope.get(LOG_FIELDS, {}),
                },
            )
