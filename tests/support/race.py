"""Several processes doing one thing at the same instant, as replicas starting together do."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any


def race(target: Callable[..., None], argsets: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in a spawned process per tuple of ``argsets``.

    ``target`` waits at ``barrier`` (so all act at once, past their start-up) and puts
    its outcome on ``results``; the outcomes are returned in the order they arrived.
    """
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(len(argsets)), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, barrier, results)) for args in argsets]
    for proc in procs:
        proc.start()
    try:
        return [results.get(timeout=120) for _ in procs]
    finally:
        for proc in procs:
            proc.join(30)
