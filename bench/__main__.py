"""``python -m bench``: the benchmarks, printed as one Markdown report.

    python -m bench                 # every part, about three minutes per round
    python -m bench --quick         # shorter runs, for a smoke check
    python -m bench --repeat 3      # three rounds: medians and the noise between them
    python -m bench profile         # py-spy profile of the token path under load
    python -m bench compare fast=/tmp/copy/src   # A/B a change to the token path
    python -m bench attack          # legitimate clients while the server is attacked
    python -m bench memory          # resident memory of each process kind
    python -m bench slow-log        # the token endpoint while stderr is read slowly

The report is printed and, unless ``--no-write``, saved to ``bench/RESULTS.md``: whole
after a run of every part, only the sections measured after a run of some parts.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench import machine, report, results, tokens

Part = Callable[[argparse.Namespace, Path], list[str]]


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def token_part(args: argparse.Namespace, workdir: Path) -> list[str]:
    """Token throughput, beside the floor, raw signing and the reference."""
    plan = tokens.Plan.quick(args.repeat) if args.quick else tokens.Plan.full(args.repeat)
    results = tokens.measure(plan, workdir, _progress, workers=args.workers)
    return report.render(plan, results)


def _module_part(module: str) -> Part:
    """The ``part`` of ``bench.<module>``, imported when it runs: a part whose extra
    dependencies are missing then fails alone."""

    def run(args: argparse.Namespace, workdir: Path) -> list[str]:
        part: Part = importlib.import_module(f"bench.{module}").part
        return part(args, workdir)

    return run


PARTS: dict[str, Part] = {
    "tokens": token_part,
    "forward-auth": _module_part("forward_auth"),
    "registration": _module_part("registration"),
    "verify": _module_part("verify"),
    "memory": _module_part("memory"),
    "slow-log": _module_part("slowlog"),
}


def run_benchmarks(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="swarm-oauth-bench-"))
    started = datetime.datetime.now(datetime.UTC)
    try:
        body: list[str] = []
        for name in args.parts or list(PARTS):
            body += ["", *PARTS[name](args, workdir)]
    finally:
        if args.keep:
            _progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    command = ["python -m bench", *args.parts, *(["--quick"] if args.quick else [])]
    if args.repeat != 1:
        command.append(f"--repeat {args.repeat}")
    run = f"`{' '.join(command)}`, {started:%Y-%m-%d %H:%M} UTC, on:"
    lines: list[str]
    if args.parts:
        # The sections measured now say when and on what; the file keeps the others.
        lines = []
        for section in results.sections(body):
            lines += [section[0], "", run, *machine.describe(), *section[1:]]
    else:
        lines = ["# Benchmark results", "", run, *machine.describe(), *body]
    text = "\n".join([*lines, ""])
    print(text)
    if not args.no_write:
        if args.parts:
            results.write_sections(lines)
        else:
            results.RESULTS.write_text(text)
        _progress(f"written to {results.RESULTS}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("parts", nargs="*", help=f"any of {', '.join(PARTS)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke check)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds (default 1)")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="the many-worker case")
    parser.add_argument(
        "--no-write", action="store_true", help=f"do not write {results.RESULTS.name}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["profile"]:
        from bench import profile

        return profile.main(argv[1:])
    if argv[:1] == ["compare"]:
        from bench import compare

        return compare.main(argv[1:])
    if argv[:1] == ["attack"]:
        from bench import attack

        return attack.main(argv[1:])
    args = parser.parse_args(argv)
    unknown = [name for name in args.parts if name not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    return run_benchmarks(args)


if __name__ == "__main__":
    sys.exit(main())
