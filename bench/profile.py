"""``python -m bench profile``: where the token path spends its CPU, under real load.

Starts the server (one worker, on core 0), loads it with wrk from core 1 and samples it
with py-spy for the duration. Prints the share of CPU samples spent in each stage of a
token request, then the hottest functions; keeps py-spy's collapsed stacks (loadable in
speedscope or flamegraph.pl) in the work dir.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

from bench import wrk
from bench.revisions import source_at
from bench.targets import Target, start

# Stages of a request. A stage is a path of ``(file fragment, function prefix)`` frames
# that must appear in a sample's stack in this order (other frames may sit between), so
# a stage can be "json inside the issuer" rather than every json call. A sample counts
# for every stage it is inside: nested stages overlap by design.
Frame = tuple[str, str]
# ``Observed.__call__`` (ASGI) and ``_ObservedDirect.__call__`` (answered by the protocol).
OBSERVED: Frame = ("swarm_oauth/api/observe.py", "__call__")
ENDPOINT: Frame = ("swarm_oauth/api/token_endpoint.py", "")
ISSUE: Frame = ("swarm_oauth/tokens/issuer.py", "issue")
ACCESS_LOG: Frame = ("swarm_oauth/logs.py", "__call__")
UVICORN: Frame = ("uvicorn/protocols/http/httptools_impl.py", "")
UVICORN_SEND: Frame = ("uvicorn/protocols/http/httptools_impl.py", "send")
STARLETTE: Frame = ("starlette/applications.py", "__call__")
STAGES: tuple[tuple[str, tuple[Frame, ...]], ...] = (
    ("whole app (Observed: ASGI, or a direct answer)", (OBSERVED,)),
    ("  of which through ASGI (RequestResponseCycle.run_asgi)", (
        ("uvicorn/protocols/http/httptools_impl.py", "run_asgi"), OBSERVED)),
    ("  token endpoint (TokenEndpoint)", (ENDPOINT,)),
    ("    read body, parse form and request", (ENDPOINT, ("swarm_oauth/", "parse_"))),
    ("    client lookup (cache)", (ENDPOINT, ("swarm_oauth/api/forms.py", ""))),
    ("    secret check", (ENDPOINT, ("swarm_oauth/clients/secrets.py", "verify_secret"))),
    ("    TokenIssuer.issue", (ISSUE,)),
    ("      claims JSON", (ISSUE, ("json/", ""))),
    ("      signature (cryptography, DER to R||S)", (ISSUE, ("swarm_oauth/tokens/jws.py", "sign"))),
    ("        of which on a signing thread", (("concurrent/futures/thread.py", "_worker"), ISSUE)),
    ("    response through ASGI (uvicorn: headers, socket writes)", (ENDPOINT, UVICORN_SEND)),
    ("  access line on the loop (HotLog: its fields queued)", (OBSERVED, ACCESS_LOG)),
    ("  metrics (prometheus_client)", (OBSERVED, ("prometheus_client/", ""))),
    ("direct answer encoded (serving/direct.py)", (("swarm_oauth/serving/direct.py", "encode"),)),
    ("log writer thread (QueueListener)", (("logging/handlers.py", "_monitor"),)),
    ("  write to stderr", (("logging/handlers.py", "_monitor"), ("swarm_oauth/logs.py", "write"))),
    ("floor app (Starlette)", (STARLETTE,)),
    ("  floor response (uvicorn: headers, socket writes)", (STARLETTE, UVICORN_SEND)),
    ("HTTP protocol (uvicorn httptools_impl and ours)", (UVICORN,)),
    ("store (change watcher)", (("swarm_oauth/store/", ""),)),
)  # fmt: skip


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy's raw output: one ``frame;frame;... count`` per line, root first."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def _matches(frame: str, fragment: str, function: str) -> bool:
    # Frames read ``Class.function (path/file.py:line)``.
    name, _, where = frame.partition(" (")
    return fragment in where and name.rpartition(".")[2].startswith(function)


def _inside(frames: list[str], path: tuple[Frame, ...]) -> bool:
    """Whether ``frames`` (root first) hold the frames of ``path`` in order."""
    remaining = iter(frames)
    return all(any(_matches(frame, *step) for frame in remaining) for step in path)


def stage_shares(stacks: list[tuple[list[str], int]]) -> list[tuple[str, float]]:
    """Each stage's share of all samples; stages no sample is inside are left out."""
    total = sum(count for _, count in stacks) or 1
    shares = []
    for label, path in STAGES:
        inside = sum(count for frames, count in stacks if _inside(frames, path))
        if inside:
            shares.append((label, inside / total))
    return shares


def hottest(stacks: list[tuple[list[str], int]], top: int) -> list[tuple[str, float]]:
    """Functions by self time (the innermost Python frame of each sample)."""
    total = sum(count for _, count in stacks) or 1
    self_time: Counter[str] = Counter()
    for frames, count in stacks:
        self_time[frames[-1]] += count
    return [(frame, count / total) for frame, count in self_time.most_common(top)]


def summary(stacks: list[tuple[list[str], int]], cpu_us: float, top: int = 25) -> list[str]:
    """The profile as text; ``cpu_us``, the server's CPU time per request, turns each
    share into microseconds."""
    samples = sum(count for _, count in stacks)
    lines = [
        f"{samples} samples (CPU only; idle threads excluded), {cpu_us:.0f} µs CPU a request",
        "",
        "stage: share of samples, µs a request",
    ]
    lines += [
        f"  {share:6.1%} {share * cpu_us:6.1f}  {label}" for label, share in stage_shares(stacks)
    ]
    lines += ["", "hottest functions by self time:"]
    lines += [f"  {share:6.1%}  {frame}" for frame, share in hottest(stacks, top)]
    return lines


def record(pid: int, seconds: float, rate: int, out: Path) -> None:
    """Sample ``pid`` with py-spy into ``out`` (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    subprocess.run(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--rate",
            str(rate),
            "--format",
            "raw",
            "--function",
            "--nonblocking",
            "--output",
            str(out),
        ],
        check=True,
        capture_output=True,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench profile", description=__doc__)
    parser.add_argument("--alg", default="ES256", choices=("ES256", "EdDSA", "RS256"))
    parser.add_argument("--target", default="ours", choices=("ours", "floor"))
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument(
        "--src", help="ours from this src directory or git revision instead of the installed"
    )
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="swarm-oauth-profile-"))
    src = None
    if args.src:
        tree = Path(args.src)
        src = str(tree if (tree / "swarm_oauth").is_dir() else source_at(args.src, workdir))
    target = Target(args.target, args.alg if args.target == "ours" else "-", 1, src=src)
    running = start(target, workdir)
    out = workdir / "profile.collapsed"
    try:
        running.hit(args.connections, 2, target.load_cores)  # warm-up
        result: list[tuple[wrk.Load, float]] = []
        # Load for a little longer than the sampling, so every sample is under load.
        loader = threading.Thread(
            target=lambda: result.append(
                running.hit(args.connections, args.seconds + 2, target.load_cores)
            )
        )
        loader.start()
        record(running.server.proc.pid, args.seconds, args.rate, out)
        loader.join()
    finally:
        running.server.stop()
    measured, cpu_us = result[0]
    print(
        f"{target.label}, 1 worker, {args.connections} conns, under py-spy at {args.rate} Hz: "
        f"{measured.rate:,.0f} tokens/s, p99 {measured.p99_ms:.1f} ms"
    )
    print("\n".join(summary(parse_collapsed(out.read_text()), cpu_us)))
    print(f"\ncollapsed stacks: {out}")
    return 0
