"""Prometheus metrics of the token server: one registry per process, or with several
workers one view of them all (``swarm_oauth.api.multiprocess``)."""

from __future__ import annotations

import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from swarm_oauth.runtime import Runtime
from swarm_oauth.store import ChangeBatch, StoreError

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "swarm_oauth_http_requests",
    "HTTP requests by route, method and status code.",
    ["route", "method", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "swarm_oauth_http_request_duration_seconds",
    "Time from request start to the end of the response, by route.",
    ["route"],
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
TOKENS = Counter(
    "swarm_oauth_token_requests",
    "Token requests by outcome (issued or the OAuth error code).",
    ["outcome"],
    registry=REGISTRY,
)
TOKEN_ISSUE_SECONDS = Histogram(
    "swarm_oauth_token_issue_seconds",
    "Time to authenticate the client and sign a token, excluding HTTP.",
    registry=REGISTRY,
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)
FORWARD_AUTH = Counter(
    "swarm_oauth_forward_auth_requests",
    "Forward-auth checks (GET /api/verify) by outcome: allowed, or the error code.",
    ["outcome"],
    registry=REGISTRY,
)


class _StoreMetrics:
    """The store as one process sees it. With several workers (multiprocess mode) the
    live workers' values are combined: the store is up only if every worker reaches it,
    the lag is the worst worker's, the client count the most recently counted."""

    def __init__(self) -> None:
        self.clients = Gauge(
            "swarm_oauth_clients",
            "Registered clients, counted when they change.",
            registry=REGISTRY,
            multiprocess_mode="livemostrecent",
        )
        self.up = Gauge(
            "swarm_oauth_store_up",
            "1 when the last poll of the store's change log succeeded, else 0.",
            registry=REGISTRY,
            multiprocess_mode="livemin",
        )
        self.lag = Gauge(
            "swarm_oauth_change_watcher_lag_seconds",
            "Seconds since the change log was last read; caches are refused past one second.",
            registry=REGISTRY,
            multiprocess_mode="livemax",
        )


# Created at a process's first watcher round, not at import: in multiprocess mode a gauge
# is written to the worker's file (as 0) the moment it exists, so a worker still starting
# would pull the combined store_up to 0 though no poll has failed.
_store_metrics: _StoreMetrics | None = None
_store_metrics_lock = threading.Lock()


def _store() -> _StoreMetrics:
    global _store_metrics
    with _store_metrics_lock:
        if _store_metrics is None:
            _store_metrics = _StoreMetrics()
        return _store_metrics


class StoreGauges:
    """Keeps the store gauges current from the change watcher's rounds."""

    def __init__(self, runtime: Runtime, recount_every: float = 1.0) -> None:
        self._runtime = runtime
        self._recount_every = recount_every
        self._dirty = True
        self._counted_at = -recount_every

    def __call__(self, batch: ChangeBatch | None) -> None:
        """One watcher round: ``batch`` None means the store did not answer."""
        gauges = _store()
        gauges.up.set(0 if batch is None else 1)
        gauges.lag.set(self._runtime.watcher.seconds_since_success())
        if batch is None:
            return
        if not batch.complete or any(change.kind == "client" for change in batch.changes):
            self._dirty = True
        # Thousands of registrations in a burst cost one count a second, not one each.
        now = time.monotonic()
        if self._dirty and now - self._counted_at >= self._recount_every:
            self._counted_at = now
            try:
                gauges.clients.set(self._runtime.store.count_clients())
                self._dirty = False
            except StoreError:
                gauges.up.set(0)
