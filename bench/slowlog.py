"""``python -m bench slow-log``: what a slow log consumer does to the token endpoint.

The server's output goes to a file (read as fast as it is written), or to a pipe that
this process reads at ``SLOW_BYTES_PER_SECOND``, as a busy log driver would. Each round
loads, in turn, the installed server and ``--before`` (a revision that wrote its access
log on the event loop, extracted with git), one worker pinned to a core, ES256, 32
connections. Before, a line the pipe cannot take holds the event loop, so every request
waits for the consumer; now lines queue for a writer thread and, past its bound, are
dropped and counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench import wrk
from bench.revisions import source_at
from bench.targets import Running, Target, start
from bench.tokens import Plan, spread

# The last revision whose access log was written on the event loop.
BEFORE = "f8ff22e"
# About 250 access lines a second: far fewer than one worker issues tokens.
SLOW_BYTES_PER_SECOND = 64 * 1024
CONNECTIONS = 32


class SlowReader:
    """Reads a server's output pipe at ``rate`` bytes a second, keeping what it read."""

    def __init__(self, running: Running, rate: float) -> None:
        stream = running.server.proc.stdout
        assert stream is not None
        self._fd = stream.fileno()
        self.rate: float | None = rate
        self.data = bytearray()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while True:
            chunk = os.read(self._fd, 4096)
            if not chunk:
                return
            self.data += chunk
            if self.rate:
                time.sleep(len(chunk) / self.rate)

    def catch_up(self, quiet: float = 1.0, limit: float = 30.0) -> None:
        """Read at full speed until nothing came for ``quiet`` seconds: the server's
        writer then reports what it dropped."""
        self.rate = None
        deadline = time.monotonic() + limit
        size = -1
        while len(self.data) != size and time.monotonic() < deadline:
            size = len(self.data)
            time.sleep(quiet)

    def dropped(self) -> int:
        """The records the server reported dropping, in what was read."""
        count = 0
        for line in bytes(self.data).splitlines():
            if b"log records dropped" in line:
                count += int(json.loads(line).get("dropped", 0))
        return count

    def join(self) -> None:
        self._thread.join(30)


@dataclass
class Figures:
    """Runs by (variant, consumer)."""

    loads: dict[tuple[str, str], list[wrk.Load]] = field(default_factory=lambda: defaultdict(list))
    dropped: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(list))
    load_average: list[float] = field(default_factory=list)


def one_run(target: Target, consumer: str, plan: Plan, workdir: Path) -> tuple[wrk.Load, int]:
    """Start ``target`` with its output to ``consumer``, warm it up, load it once."""
    piped = consumer == "slow pipe"
    target = Target(target.kind, target.alg, 1, src=target.src, variant=target.variant, piped=piped)
    running = start(target, workdir)
    reader = SlowReader(running, SLOW_BYTES_PER_SECOND) if piped else None
    try:
        running.hit(CONNECTIONS, plan.warmup, target.load_cores)
        load, _ = running.hit(CONNECTIONS, plan.seconds, target.load_cores)
        if reader is not None:
            reader.catch_up()
    finally:
        running.server.stop()
    if reader is None:
        return load, 0
    reader.join()
    return load, reader.dropped()


def measure(plan: Plan, before: str, workdir: Path) -> Figures:
    """Every variant with every consumer, ``plan.repeat`` rounds, alternating."""
    figures = Figures()
    variants = {
        "now": Target("ours", "ES256", 1),
        "before": Target("ours", "ES256", 1, src=str(source_at(before, workdir)), variant="b"),
    }
    for n in range(1, plan.repeat + 1):
        figures.load_average.append(os.getloadavg()[0])
        for consumer in ("file", "slow pipe"):
            for name, target in variants.items():
                print(f"slow-log round {n}: {name}, {consumer}", file=sys.stderr, flush=True)
                load, dropped = one_run(target, consumer, plan, workdir)
                figures.loads[(name, consumer)].append(load)
                figures.dropped[(name, consumer)].append(dropped)
    return figures


def render(figures: Figures, plan: Plan, before: str) -> list[str]:
    """The section of the report."""
    loads = ", ".join(f"{a:.2f}" for a in figures.load_average)
    lines = [
        "## A slow log consumer",
        "",
        f"`python -m bench slow-log`: `swarm-oauth serve` (ES256, SQLite, one worker pinned "
        f"to core 0, wrk on core 1, {CONNECTIONS} connections, access log on), its output to "
        f"a file or to a pipe read at {SLOW_BYTES_PER_SECOND // 1024} KiB/s (about 250 "
        f"access lines a second). *now* is this checkout, *before* revision `{before}`, "
        "which wrote each line on the event loop; both run in every round, alternating, "
        f"{plan.seconds:g} s each after a {plan.warmup:g} s warm-up, {plan.repeat} "
        "round(s); medians, ± half the range as a share. 1-minute load average at each "
        f"round's start: {loads}.",
        "",
        "| server | output | tokens/s | ± | p50 ms | p99 ms | x before | lines dropped |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, consumer), runs in figures.loads.items():
        rate = statistics.median(load.rate for load in runs)
        theirs = figures.loads[("before", consumer)]
        ratios = [a.rate / b.rate for a, b in zip(runs, theirs, strict=False) if b.rate]
        dropped = statistics.median(figures.dropped[(name, consumer)])
        lines.append(
            f"| {name} | {consumer} | {rate:,.0f} | {spread(load.rate for load in runs):.0%} "
            f"| {statistics.median(load.p50_ms for load in runs):.1f} "
            f"| {statistics.median(load.p99_ms for load in runs):.1f} "
            f"| {statistics.median(ratios):.1f}x | {dropped:,.0f} |"
        )
    return lines


def part(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The slow-log part of ``python -m bench``."""
    plan = Plan.quick(args.repeat) if args.quick else Plan.full(args.repeat)
    return render(measure(plan, BEFORE, workdir), plan, BEFORE)
