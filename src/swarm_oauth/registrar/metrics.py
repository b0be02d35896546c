"""Prometheus metrics of the registrar, fed by the reconciler through its ``Observer``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.status import State, StatusBoard


class RegistrarMetrics:
    """One registry per registrar, so several can live in one process (tests)."""

    def __init__(self, board: StatusBoard) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_ServicesByState(board))
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
        self._refusals = Counter(
            "swarm_oauth_registrar_refusals",
            "Services refused, by reason (a malformed label, or what the policy does not allow).",
            ["reason"],
            registry=self.registry,
        )
        self._rotations = Counter(
            "swarm_oauth_registrar_secret_rotations",
            "Client secrets of managed services rotated, by reason (age, request).",
            ["reason"],
            registry=self.registry,
        )
        self._ready = Gauge(
            "swarm_oauth_registrar_ready",
            "1 when the last full pass or readiness check reached Docker and the clients API.",
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

    def rotated(self, reason: str) -> None:
        """Count one client-secret rotation."""
        self._rotations.labels(reason).inc()

    def refused(self, code: str) -> None:
        """Count one refusal."""
        self._refusals.labels(code).inc()

    def full_pass(self, managed_services: int) -> None:
        """Record a finished full pass."""
        self._managed.set(managed_services)
        self._last_pass.set(time.time())
        self._ready.set(1)

    def pass_failed(self) -> None:
        """A full pass could not list what it needs."""
        self._ready.set(0)

    def readiness(self, ready: bool) -> None:
        """Record the outcome of a readiness check."""
        self._ready.set(1 if ready else 0)


class _ServicesByState(Collector):
    """``swarm_oauth_registrar_services{state}`` from the status board, at each scrape."""

    def __init__(self, board: StatusBoard) -> None:
        self._board = board

    def collect(self) -> Iterator[Metric]:
        counts = self._board.states()
        family = GaugeMetricFamily(
            "swarm_oauth_registrar_services",
            "Selected services by state (registered, rolling, stranded, refused, conflict, "
            "pending).",
            labels=["state"],
        )
        for state in State:
            family.add_metric([state.value], counts[state])
        yield family
