"""Access log and request metrics around any ASGI app, without buffering responses."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import Protocol

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from swarm_oauth.api.metrics import HTTP_DURATION, HTTP_REQUESTS
from swarm_oauth.api.responses import json_answer, send_json
from swarm_oauth.logs import HotLog
from swarm_oauth.serving.direct import Answer, DirectEndpoint, Headers, Later
from swarm_oauth.web import error_body

access_log = logging.getLogger("swarm_oauth.access")
_log_request = HotLog(access_log, "request")
error_log = logging.getLogger("swarm_oauth.errors")

# Where an endpoint puts what the access log line should add (a token request's client
# id and OAuth error): a dict in the ASGI scope under this key.
LOG_FIELDS = "swarm_oauth.log"


def route_label(scope: Scope) -> str:
    """The route template (``/api/clients/{client_id}``), never the raw path, so that
    metric labels stay few and no client id or token ends up in a label."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    return str(scope.get("swarm_oauth.route", "unmatched"))


class AnswersAtOnce(Protocol):
    """An endpoint that can answer some requests without waiting (``TokenEndpoint``,
    ``ForwardAuthEndpoint``): those with its ``method``."""

    method: str
    max_body_bytes: int

    def answer_now(
        self, headers: Headers, body: bytes, query: bytes, fields: dict[str, object]
    ) -> Answer | Later | None:
        """The whole answer (or what computes it), or ``None`` to be called as ASGI
        instead; ``fields`` takes what the access log line should add."""
        ...


class Observed:
    """Logs one line and counts each HTTP request; turns an unexpected exception into a
    plain 500 so no traceback reaches the caller. The query string is never logged.

    ``direct`` are endpoints (by path) that the protocol may also call without ASGI;
    they are offered to it, observed alike, as ``direct_endpoints``.
    """

    def __init__(self, app: ASGIApp, direct: Mapping[str, AnswersAtOnce] | None = None) -> None:
        self.app = app
        # prometheus_client's labels() costs a lookup under a lock; the label sets are
        # few (routes x methods x statuses), so their children are kept here.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[str, Histogram] = {}
        self.direct_endpoints: dict[bytes, DirectEndpoint] = {
            path.encode(): _ObservedDirect(self, path, endpoint)
            for path, endpoint in (direct or {}).items()
        }

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
            self.record(
                route_label(scope),
                scope["method"],
                scope["path"],
                status,
                time.perf_counter() - started,
                scope.get("client"),
                scope.get(LOG_FIELDS, {}),
            )

    def record(
        self,
        route: str,
        method: str,
        path: str,
        status: int,
        elapsed: float,
        client: tuple[str, int] | None,
        fields: Mapping[str, object],
    ) -> None:
        """Count a request and write its access log line."""
        self.count(route, method, status, elapsed)
        _log_request(
            {
                "method": method,
                "path": path,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 3),
                "remote": client[0] if client else None,
                **fields,
            },
        )

    def count(self, route: str, method: str, status: int, elapsed: float) -> None:
        """Count a request in the metrics."""
        key = (route, method, status)
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = HTTP_REQUESTS.labels(route, method, str(status))
        counter.inc()
        timer = self._timers.get(route)
        if timer is None:
            timer = self._timers[route] = HTTP_DURATION.labels(route)
        timer.observe(elapsed)


class _ObservedDirect:
    """A direct endpoint, logged and counted as ``Observed`` does its ASGI requests."""

    __slots__ = ("_endpoint", "_log", "_method", "_observed", "_path", "max_body_bytes", "method")

    def __init__(self, observed: Observed, path: str, endpoint: AnswersAtOnce) -> None:
        self._observed = observed
        self._path = path
        self._endpoint = endpoint
        self._method = endpoint.method
        self.method = endpoint.method.encode()
        self.max_body_bytes = endpoint.max_body_bytes
        # The access line's fields that every request here shares ("route" is the path).
        fixed = {"method": self._method, "path": path, "route": path}
        self._log = HotLog(access_log, "request", fixed)

    def __call__(
        self, headers: Headers, body: bytes, query: bytes, client: tuple[str, int] | None
    ) -> Answer | Later | None:
        started = time.perf_counter()
        fields: dict[str, object] = {}
        try:
            answer = self._endpoint.answer_now(headers, body, query, fields)
        except Exception:
            answer = self._failed()
        if answer is None:
            return None
        if isinstance(answer, Answer):
            self._record(answer, started, client, fields)
            return answer
        return partial(self._finish, answer, started, client, fields)

    def _finish(
        self,
        later: Later,
        started: float,
        client: tuple[str, int] | None,
        fields: dict[str, object],
    ) -> Answer:
        """The rest of an answer, recorded once computed (its time included)."""
        try:
            answer = later()
        except Exception:
            answer = self._failed()
        self._record(answer, started, client, fields)
        return answer

    def _failed(self) -> Answer:
        error_log.exception("unhandled error", extra={"path": self._path})
        return json_answer(500, error_body("server_error", "internal error"))

    def _record(
        self,
        answer: Answer,
        started: float,
        client: tuple[str, int] | None,
        fields: dict[str, object],
    ) -> None:
        elapsed = time.perf_counter() - started
        self._observed.count(self._path, self._method, answer.status, elapsed)
        self._log(
            {
                "status": answer.status,
                "duration_ms": round(elapsed * 1000, 3),
                "remote": client[0] if client else None,
                **fields,
            }
        )
