"""``python -m bench compare NAME=SRC ...``: is a change to the token path faster?

Alternates the installed server, each named source tree (a copy of ``src/`` with the
change applied, or a git revision whose ``src/`` is extracted) and the floor, round after
round, at one configuration (default: the headline one), so that drift in a shared
machine's load hits every variant alike. Prints each variant's median tokens/s as a
multiple of the installed server's and a fraction of the floor's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench import wrk
from bench.revisions import source_at
from bench.targets import Target, start


def measure_once(
    target: Target, workdir: Path, connections: int, seconds: float
) -> tuple[wrk.Load, float]:
    """Start ``target``, warm it up, load it once and stop it: the outcome and the
    server's CPU µs per request."""
    running = start(target, workdir)
    try:
        running.hit(connections, 1, target.load_cores)
        return running.hit(connections, seconds, target.load_cores)
    finally:
        running.server.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument(
        "variants", nargs="*", metavar="NAME=SRC", help="e.g. fastlog=/tmp/x/src or before=main"
    )
    parser.add_argument("--alg", default="ES256", choices=("ES256", "EdDSA", "RS256"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)

    targets = [Target("floor", "-", 1), Target("ours", args.alg, 1, variant="installed")]
    loads: dict[Target, list[wrk.Load]] = {}
    cpu: dict[Target, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="swarm-oauth-compare-") as tmp:
        for spec in args.variants:
            name, sep, src = spec.partition("=")
            if not sep:
                parser.error(f"{spec!r}: expected NAME=SRC (a src directory or a git revision)")
            tree = Path(src) if Path(src, "swarm_oauth").is_dir() else source_at(src, Path(tmp))
            targets.append(Target("ours", args.alg, 1, src=str(tree.resolve()), variant=name))
        loads = {target: [] for target in targets}
        for round_ in range(1, args.rounds + 1):
            for target in targets:
                load, cpu_us = measure_once(target, Path(tmp), args.connections, args.seconds)
                loads[target].append(load)
                cpu[target].append(cpu_us)
                print(
                    f"round {round_}: {target.label:40} {load.rate:8,.0f}/s  "
                    f"p99 {load.p99_ms:6.1f} ms  {cpu_us:5.0f} µs CPU",
                    file=sys.stderr,
                    flush=True,
                )

    def median_rate(target: Target) -> float:
        return statistics.median(load.rate for load in loads[target])

    floor, installed = median_rate(targets[0]), median_rate(targets[1])
    print(f"\n{args.alg}, 1 worker, {args.connections} conns, {args.rounds} rounds (medians):")
    for target in targets:
        rate = median_rate(target)
        rates = sorted(round(load.rate) for load in loads[target])
        p99 = statistics.median(load.p99_ms for load in loads[target])
        print(
            f"  {target.label:40} {rate:8,.0f}/s  {rate / installed:5.2f}x installed  "
            f"{rate / floor:4.0%} of floor  p99 {p99:5.1f} ms  "
            f"{statistics.median(cpu[target]):5.0f} µs CPU  (rates {rates})"
        )
    return 0
