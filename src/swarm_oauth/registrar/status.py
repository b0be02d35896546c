"""What the registrar last concluded about each selected service, for people asking.

Reconciles write it; ``GET /v1/services`` and ``swarm-oauth registrar status`` read it
beside Docker's list of services (a selected service with no entry yet is pending).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class State(StrEnum):
    """Where a selected service stands."""

    REGISTERED = "registered"  # it has its client, its secret, and mounts it
    # Registered, and tasks still run with an older secret (a rotation rolling out) that
    # still works; the reason says until when.
    ROLLING = "rolling"
    # Registered, and tasks still run with a secret that no longer works: the rolling
    # update that hands them the new one is stuck, paused or slower than the grace.
    STRANDED = "stranded"
    REFUSED = "refused"  # its labels ask for what they may not (or are malformed)
    CONFLICT = "conflict"  # someone else owns its client id or its secret's target
    PENDING = "pending"  # not reconciled yet, or the last try failed and will be retried

    @property
    def registered(self) -> bool:
        """It has its client and mounts its current secret (however far the rollout)."""
        return self in (State.REGISTERED, State.ROLLING, State.STRANDED)


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One selected service as the registrar last saw it."""

    service_id: str
    service_name: str
    state: State
    client_id: str | None = None
    reason: str = ""
    secret: str | None = None  # the Docker secret's name
    converged_at: float | None = None  # when it was last seen registered

    def view(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "state": self.state.value}


class StatusBoard:
    """The latest status of each service, by service id; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, ServiceStatus] = {}

    def record(self, status: ServiceStatus) -> None:
        """Replace a service's status; a registered one is stamped with the time."""
        if status.state.registered and status.converged_at is None:
            status = ServiceStatus(**{**asdict(status), "converged_at": time.time()})
        with self._lock:
            previous = self._entries.get(status.service_id)
            if not status.state.registered and previous is not None:
                # Keep when it last converged: "refused since ..." needs it.
                status = ServiceStatus(**{**asdict(status), "converged_at": previous.converged_at})
            self._entries[status.service_id] = status

    def forget(self, service_id: str) -> None:
        """The service is gone or no longer selected."""
        with self._lock:
            self._entries.pop(service_id, None)

    def service_ids(self) -> set[str]:
        """The ids of the services on the board now."""
        with self._lock:
            return set(self._entries)

    def get(self, service_id: str) -> ServiceStatus | None:
        """The latest status of one service, if any."""
        with self._lock:
            return self._entries.get(service_id)

    def states(self) -> Counter[State]:
        """How many services are in each state, among those recorded."""
        with self._lock:
            return Counter(entry.state for entry in self._entries.values())
