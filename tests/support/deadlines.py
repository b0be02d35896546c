"""Bounds on how soon a change shows, checked against when each request was sent.

On a loaded machine an answer can arrive well after its request was sent; a request sent
inside the bound that still passes does not break the bound, however late its answer comes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def refused_within(
    still_passes: Callable[[], bool],
    since: float,
    within: float,
    message: str = "still let through after the bound",
) -> None:
    """Call ``still_passes`` until it returns false; fail if a call that still passed was
    sent ``within`` seconds or more after ``since`` (a ``time.monotonic()`` reading)."""
    while True:
        sent = time.monotonic()
        if not still_passes():
            return
        assert sent - since < within, f"{message} (sent {sent - since:.2f} s after the change)"
        time.sleep(0.02)
