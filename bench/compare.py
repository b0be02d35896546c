"""``python -m bench compare NAME=SRC ...``: is a change to the token path faster?

Alternates the installed server, each named source tree (a copy of ``src/`` with the
change applied, or a git revision whose ``src/`` is extracted) and the floor, round after
round, at one configuration (default: the headline one), so that drift in a shared
machine's load hits every variant alike. All run at once, one loaded at a time. Prints
each variant's median tokens/s, the medians of its per-round ratios to the installed
server and to the floor, and its share of floor + raw signature (issue 18).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from bench import wrk
from bench.revisions import source_at
from bench.targets import Running, Target, start
from bench.tokens import signing_rates


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

    floor = Target("floor", "-", 1)
    installed = Target("ours", args.alg, 1, variant="installed")
    targets = [floor, installed]
    loads: dict[Target, list[wrk.Load]] = defaultdict(list)
    cpu: dict[Target, list[float]] = defaultdict(list)
    signing: list[float] = []
    with tempfile.TemporaryDirectory(prefix="swarm-oauth-compare-") as tmp, ExitStack() as stack:
        for spec in args.variants:
            name, sep, src = spec.partition("=")
            if not sep:
                parser.error(f"{spec!r}: expected NAME=SRC (a src directory or a git revision)")
            tree = Path(src) if Path(src, "swarm_oauth").is_dir() else source_at(src, Path(tmp))
            targets.append(Target("ours", args.alg, 1, src=str(tree.resolve()), variant=name))
        # All up at once (an idle server costs its core nothing), loaded in turn.
        running: dict[Target, Running] = {}
        for target in targets:
            running[target] = started = start(target, Path(tmp))
            stack.callback(started.server.stop)
        for round_ in range(1, args.rounds + 1):
            signing.append(signing_rates(1)[args.alg][0])
            for target in targets:
                running[target].hit(args.connections, 1, target.load_cores)
                load, cpu_us = running[target].hit(
                    args.connections, args.seconds, target.load_cores
                )
                loads[target].append(load)
                cpu[target].append(cpu_us)
                print(
                    f"round {round_}: {target.label:40} {load.rate:8,.0f}/s  "
                    f"p99 {load.p99_ms:6.1f} ms  {cpu_us:5.0f} µs CPU",
                    file=sys.stderr,
                    flush=True,
                )

    def per_round(target: Target, base: Target) -> str:
        ratios = [a.rate / b.rate for a, b in zip(loads[target], loads[base], strict=True)]
        return f"{statistics.median(ratios):.2f}"

    print(
        f"\n{args.alg}, 1 worker, {args.connections} conns, {args.rounds} rounds: medians, "
        "ratios the medians of per-round ratios; raw signing "
        f"{statistics.median(signing):,.0f}/s"
    )
    for target in targets:
        rates = [load.rate for load in loads[target]]
        combined = [
            rate * (1 / f.rate + 1 / sign)
            for rate, f, sign in zip(rates, loads[floor], signing, strict=True)
        ]
        p99 = statistics.median(load.p99_ms for load in loads[target])
        print(
            f"  {target.label:40} {statistics.median(rates):8,.0f}/s  "
            f"{per_round(target, installed)}x installed  {per_round(target, floor)}x floor  "
            f"{statistics.median(combined):4.0%} of floor + sign  p99 {p99:5.1f} ms  "
            f"{statistics.median(cpu[target]):5.0f} µs CPU"
        )
    return 0
