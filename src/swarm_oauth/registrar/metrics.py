"""Prometheus metrics of the registrar, fed by the reconciler through its ``Observer``."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge

from swarm_oauth.registrar.reconcile import Outcome


class RegistrarMetrics:
    """One registry per registrar, so several can live in one process (tests)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._reconciles = Counter(
            "swarm_oauth_registrar_reconciles",
            "Reconciles of one key (a service or a client), by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self._actions = Counter(
            "swarm_oauth_registrar_actions",
            "Writes to Docker or the clients API, by kind and outcome (ok, noop, error).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self._managed = Gauge(
            "swarm_oauth_registrar_managed_services",
            "Selected services seen by the last full pass.",
            registry=self.registry,
        )
        self._last_pass = Gauge(
            "swarm_oauth_registrar_last_full_pass_timestamp_seconds",
            "When the last full pass finished (Unix time).",
            registry=self.registry,
        )
        self._queue = Gauge(
            "swarm_oauth_registrar_queue_depth",
            "Keys waiting in the work queue or being reconciled.",
            registry=self.registry,
        )
        for outcome in Outcome:
            self._reconciles.labels(outcome.value)

    def watch_queue(self, depth: Callable[[], int]) -> None:
        """Report ``depth()`` as the queue depth at every scrape."""
        self._queue.set_function(depth)

    def action(self, kind: str, outcome: str) -> None:
        """Count one write."""
        self._actions.labels(kind, outcome).inc()

    def reconciled(self, outcome: Outcome) -> None:
        """Count one service reconcile."""
        self._reconciles.labels(outcome.value).inc()

    def full_pass(self, managed_services: int) -> None:
        """Record a finished full pass."""
        self._managed.set(managed_services)
        self._last_pass.set(time.time())
