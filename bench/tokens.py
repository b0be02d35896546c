"""The token endpoint: throughput, against the floor, raw signing and the reference."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench import wrk
from bench.queries import QueryCount, count_queries
from bench.targets import REPO, SERVER_CORE, Target, start

ALGS = ("ES256", "EdDSA", "RS256")
CONNECTIONS = (32, 128)
# The defaults the token endpoint's targets are stated for.
HEADLINE = ("ES256", 1, 32)
# Issue 18: of the floor and a signature together; issue 7: p99 and the reference.
COMBINED_TARGET, P99_TARGET_MS, REFERENCE_TARGET = 0.75, 15.0, 3.0


@dataclass(frozen=True)
class Plan:
    """How long and how often to measure."""

    seconds: float
    warmup: float
    repeat: int
    stored_reference: bool  # also run the reference that stores every token

    @classmethod
    def full(cls, repeat: int) -> Plan:
        return cls(seconds=6, warmup=2, repeat=repeat, stored_reference=True)

    @classmethod
    def quick(cls, repeat: int) -> Plan:
        return cls(seconds=2, warmup=1, repeat=repeat, stored_reference=False)


@dataclass
class Results:
    """Every measurement of one benchmark run, repeats kept apart."""

    loads: dict[tuple[Target, int], list[wrk.Load]] = field(
        default_factory=lambda: defaultdict(list)
    )
    # The server's CPU time per request (µs), beside each load.
    cpu_us: dict[tuple[Target, int], list[float]] = field(default_factory=lambda: defaultdict(list))
    # Raw signatures per second of wall time, and per second of CPU time.
    signing: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    signing_cpu: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    queries: QueryCount | None = None
    load_average: list[tuple[float, float, float]] = field(default_factory=list)

    def ratios(self, target: Target, connections: int, base: Target | str) -> list[float]:
        """``target``'s rate over ``base``'s in each round: another target at the same
        connection count, or an algorithm's raw signing rate. Rounds pair up because every
        round runs every target, and a pair measured minutes apart drifts less than the
        absolute figures across rounds do."""
        mine = [load.rate for load in self.loads.get((target, connections), [])]
        if isinstance(base, Target):
            theirs = [load.rate for load in self.loads.get((base, connections), [])]
        else:
            theirs = self.signing.get(base, [])
        return [a / b for a, b in zip(mine, theirs, strict=False) if b]

    def of_combined(self, target: Target, connections: int, floor: Target) -> list[float]:
        """``target``'s rate over the least a token can cost, per round: one over the sum
        of the floor's time per request and one raw signature's time (issue 18)."""
        mine = [load.rate for load in self.loads.get((target, connections), [])]
        floors = [load.rate for load in self.loads.get((floor, connections), [])]
        signs = self.signing.get(target.alg, [])
        return [
            rate * (1 / f + 1 / s)
            for rate, f, s in zip(mine, floors, signs, strict=False)
            if f and s
        ]

    def cpu_of_combined(self, target: Target, connections: int, floor: Target) -> list[float]:
        """The same limit counted in CPU time, which other work on the core does not
        shift: (floor's CPU per request + one signature's CPU) over ``target``'s."""
        mine = self.cpu_us.get((target, connections), [])
        floors = self.cpu_us.get((floor, connections), [])
        signs = self.signing_cpu.get(target.alg, [])
        return [
            (f + 1e6 / s) / cpu for cpu, f, s in zip(mine, floors, signs, strict=False) if cpu and s
        ]


def targets(plan: Plan, workers: int) -> list[Target]:
    """Everything to load, in run order (the floor and reference first, as ratios' bases)."""
    chosen = [Target("floor", "-", 1), Target("reference", "ES256", 1)]
    if plan.stored_reference:
        chosen.append(Target("reference-stored", "ES256", 1))
    worker_counts = (1, workers) if workers > 1 else (1,)
    chosen += [Target("ours", alg, n) for alg in ALGS for n in worker_counts]
    return chosen


def connections_for(target: Target) -> tuple[int, ...]:
    # The stored-token variant only shows what storage adds; one load level says that.
    return (32,) if target.kind == "reference-stored" else CONNECTIONS


def signing_rates(seconds: float) -> dict[str, tuple[float, float]]:
    """Raw ``cryptography`` signatures per second on the server's core, by algorithm: of
    wall time and of CPU time."""
    done = subprocess.run(
        ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "bench.signing", str(seconds)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return {alg: (float(wall), float(cpu)) for alg, (wall, cpu) in json.loads(done.stdout).items()}


def load_target(
    target: Target, plan: Plan, workdir: Path, results: Results, progress: Callable[[str], None]
) -> None:
    """Start ``target``, warm it up, measure it at each connection count, stop it."""
    running = start(target, workdir)
    try:
        running.hit(CONNECTIONS[0], plan.warmup, target.load_cores)
        for conns in connections_for(target):
            progress(f"  {target.label}, {target.workers} worker(s), {conns} conns")
            load, cpu_us = running.hit(conns, plan.seconds, target.load_cores)
            results.loads[(target, conns)].append(load)
            results.cpu_us[(target, conns)].append(cpu_us)
    finally:
        running.server.stop()


def measure(
    plan: Plan, workdir: Path, progress: Callable[[str], None], workers: int | None = None
) -> Results:
    """Run every target at every connection count, ``plan.repeat`` times over."""
    workers = workers or os.cpu_count() or 1
    results = Results()
    for round_ in range(1, plan.repeat + 1):
        results.load_average.append(os.getloadavg())
        progress(f"round {round_}/{plan.repeat}: raw signing rates")
        for alg, (wall, cpu) in signing_rates(2 if plan.seconds > 2 else 1).items():
            results.signing[alg].append(wall)
            results.signing_cpu[alg].append(cpu)
        for target in targets(plan, workers):
            load_target(target, plan, workdir, results, progress)
            time.sleep(0.5)
        results.load_average.append(os.getloadavg())
    progress("store queries per token (in process)")
    with tempfile.TemporaryDirectory(prefix="swarm-oauth-bench-q-") as qdir:
        results.queries = count_queries(Path(qdir))
    return results


def spread(values: Iterable[float]) -> float:
    """Half the min-max range as a fraction of the median (0 for one value)."""
    values = list(values)
    if len(values) < 2:
        return 0.0
    return (max(values) - min(values)) / 2 / statistics.median(values)
