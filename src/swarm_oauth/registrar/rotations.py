"""Requests to rotate a service's client secret now, and whether a rotation honoured them.

A request is honoured by the first new secret issued after it, whichever run issues it:
a reconcile already in progress when the request arrives may be the one that rotates, and
the run the request queued then finds nothing left to do. So whoever asked learns the
answer from the request itself, not from the outcome of one particular run.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(eq=False)
class RotationRequest:
    """One request; ``grace`` is how long the previous secret keeps working."""

    grace: float
    honoured: bool = False
    withdrawn: bool = field(default=False, repr=False)


class Claim:
    """The requests waiting for one service, taken by the run that may rotate it."""

    def __init__(self, requests: list[RotationRequest]) -> None:
        self.requests = requests
        self.grace: float | None = min((r.grace for r in requests), default=None)
        """The shortest grace asked for (a leaked secret must stop at once), or None."""
        self.kept = False

    def honour(self) -> None:
        """A new secret was issued: every claimed request is answered."""
        self.kept = True


class RotationRequests:
    """Rotation requests per service id, claimed by reconcile runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, list[RotationRequest]] = {}

    def add(self, service_id: str, grace: float) -> RotationRequest:
        """Ask for a new secret for ``service_id`` at its next reconcile."""
        request = RotationRequest(grace)
        with self._lock:
            self._waiting.setdefault(service_id, []).append(request)
        return request

    def withdraw(self, service_id: str, request: RotationRequest) -> bool:
        """Give up waiting; True when a rotation had honoured the request already."""
        with self._lock:
            if request.honoured:
                return True
            request.withdrawn = True
            waiting = self._waiting.get(service_id, [])
            if request in waiting:
                waiting.remove(request)
                if not waiting:
                    del self._waiting[service_id]
            return False

    @contextlib.contextmanager
    def claim(self, service_id: str) -> Iterator[Claim]:
        """Take the requests waiting for ``service_id``. Unless the block calls
        ``honour``, they wait again for the next run (the rotation failed or was not
        reached), but for those withdrawn meanwhile."""
        with self._lock:
            claim = Claim(self._waiting.pop(service_id, []))
        try:
            yield claim
        finally:
            with self._lock:
                if claim.kept:
                    for request in claim.requests:
                        request.honoured = True
                else:
                    back = [r for r in claim.requests if not r.withdrawn]
                    if back:
                        self._waiting[service_id] = back + self._waiting.get(service_id, [])
