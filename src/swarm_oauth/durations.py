"""Durations as operators write them: ``90``, ``45s``, ``10m``, ``12h``, ``30d``, ``1h30m``.

One grammar for every option that takes a duration (the server's key rotation, the
registrar's secret ages), so ``30d`` means the same everywhere. A bare number is seconds.
Written here rather than taken from a library: the grammar is five units, and the
libraries that parse more (ISO 8601, "3 weeks") would accept spellings the rest of the
documentation never uses.
"""

from __future__ import annotations

import math
import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_SECONDS = 100 * 365 * 86400
# [0-9], not \d: \d also matches other scripts' digits, which float() reads.
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd])")
_WHOLE = re.compile(r"(?:[0-9]+(?:\.[0-9]+)?[smhd])+")
_BARE = re.compile(r"[0-9]+(?:\.[0-9]+)?")
# Longer than any duration anyone writes. The text may come from a service's label, which
# Docker takes at a megabyte: it is refused before any pattern looks at it.
MAX_TEXT = 64


class InvalidDuration(ValueError):
    """Text that is not a duration; the message quotes it and shows the grammar."""


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a bare number of seconds, or numbers each followed by a unit
    ``s``, ``m``, ``h`` or ``d`` (``1h30m``). Never negative."""
    if len(text) > MAX_TEXT:
        raise InvalidDuration(
            f"{text[:40]!r}... is not a duration: longer than {MAX_TEXT} characters"
        )
    cleaned = text.strip().lower()
    if _BARE.fullmatch(cleaned):
        seconds = float(cleaned)
    elif _WHOLE.fullmatch(cleaned):
        parts = _PART.findall(cleaned)
        seconds = sum(float(number) * UNITS[unit] for number, unit in parts)
    else:
        raise InvalidDuration(
            f"{text[:40]!r} is not a duration: write seconds or a number with a unit "
            "s, m, h or d, e.g. 90, 45s, 10m, 12h, 30d, 1h30m"
        )
    # Instants this far ahead still fit the clock functions that show them.
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise InvalidDuration(f"{text[:40]!r} is too long a duration (at most 100 years)")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling ``parse_duration`` reads back (``600`` -> ``10m``)."""
    for unit in ("d", "h", "m"):
        if seconds and seconds % UNITS[unit] == 0:
            return f"{_number(seconds / UNITS[unit])}{unit}"
    return f"{_number(seconds)}s"


def _number(value: float) -> str:
    # Never an exponent ("1e+06"), which the grammar does not read.
    return f"{value:f}".rstrip("0").rstrip(".")
