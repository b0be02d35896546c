"""``python -m bench compare NAME=SRC ...``: is a change to the token path faster?

Alternates the installed server, each named source tree (a copy of ``src/`` with the
change applied) and the floor, round after round, at one configuration (default: the
headline one), so that drift in a shared machine's load hits every variant alike. Prints
each variant's median tokens/s as a multiple of the installed server's and a fraction
of the floor's.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench import wrk
from bench.targets import FORM, Target, start


def measure_once(target: Target, workdir: Path, connections: int, seconds: float) -> wrk.Load:
    """Start ``target``, warm it up, load it once and stop it."""
    running = start(target, workdir)
    try:

        def hit(duration: float) -> wrk.Load:
            return wrk.run(
                running.token_url,
                connections=connections,
                seconds=duration,
                body=FORM,
                authorization=running.authorization,
                cores=target.load_cores,
            )

        hit(1)
        return hit(seconds)
    finally:
        running.server.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument("variants", nargs="+", metavar="NAME=SRC", help="e.g. fastlog=/tmp/x/src")
    parser.add_argument("--alg", default="ES256", choices=("ES256", "EdDSA", "RS256"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args(argv)

    targets = [Target("floor", "-", 1), Target("ours", args.alg, 1, variant="installed")]
    for spec in args.variants:
        name, sep, src = spec.partition("=")
        if not sep or not Path(src, "swarm_oauth").is_dir():
            parser.error(f"{spec!r}: expected NAME=SRC with SRC/swarm_oauth a directory")
        targets.append(Target("ours", args.alg, 1, src=str(Path(src).resolve()), variant=name))

    loads: dict[Target, list[wrk.Load]] = {target: [] for target in targets}
    with tempfile.TemporaryDirectory(prefix="swarm-oauth-compare-") as tmp:
        for round_ in range(1, args.rounds + 1):
            for target in targets:
                load = measure_once(target, Path(tmp), args.connections, args.seconds)
                loads[target].append(load)
                print(
                    f"round {round_}: {target.label:40} {load.rate:8,.0f}/s  "
                    f"p99 {load.p99_ms:6.1f} ms",
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
            f"{rate / floor:4.0%} of floor  p99 {p99:5.1f} ms  (rates {rates})"
        )
    return 0
