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
from bench.targets import FORM, REPO, SERVER_CORE, Target, start

ALGS = ("ES256", "EdDSA", "RS256")
CONNECTIONS = (32, 128)
# The defaults the token endpoint's targets are stated for.
HEADLINE = ("ES256", 1, 32)
FLOOR_TARGET, FLOOR_STRETCH, P99_TARGET_MS, REFERENCE_TARGET = 0.45, 0.60, 15.0, 3.0


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
    signing: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
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


def signing_rates(seconds: float) -> dict[str, float]:
    """Raw ``cryptography`` signatures per second on the server's core, by algorithm."""
    done = subprocess.run(
        ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "bench.signing", str(seconds)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return {alg: float(rate) for alg, rate in json.loads(done.stdout).items()}


def load_target(
    target: Target, plan: Plan, workdir: Path, results: Results, progress: Callable[[str], None]
) -> None:
    """Start ``target``, warm it up, measure it at each connection count, stop it."""
    running = start(target, workdir)
    try:

        def hit(conns: int, seconds: float) -> wrk.Load:
            return wrk.run(
                running.token_url,
                connections=conns,
                seconds=seconds,
                body=FORM,
                authorization=running.authorization,
                cores=target.load_cores,
            )

        hit(CONNECTIONS[0], plan.warmup)
        for conns in connections_for(target):
            progress(f"  {target.label}, {target.workers} worker(s), {conns} conns")
            results.loads[(target, conns)].append(hit(conns, plan.seconds))
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
        for alg, rate in signing_rates(2 if plan.seconds > 2 else 1).items():
            results.signing[alg].append(rate)
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
