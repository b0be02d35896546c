"""Instants as people and programs read them: ISO 8601 in UTC, and short relative times."""

from __future__ import annotations

import itertools
import time

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def iso8601(epoch: float) -> str:
    """``2025-01-31T12:00:00Z`` for a Unix time (whole seconds)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def span(seconds: float) -> str:
    """A duration in its largest unit, with the next one below ten of it: ``45s``,
    ``4m30s``, ``14m``, ``2h5m``, ``3d``."""
    remaining = max(0, round(seconds))
    for (unit, size), (smaller, smaller_size) in itertools.pairwise(_UNITS):
        count, rest = divmod(remaining, size)
        if count:
            below = rest // smaller_size if count < 10 else 0
            return f"{count}{unit}" + (f"{below}{smaller}" if below else "")
    return f"{remaining}s"


def relative(epoch: float, now: float) -> str:
    """``in 4m`` or ``4m ago``."""
    return f"in {span(epoch - now)}" if epoch >= now else f"{span(now - epoch)} ago"
