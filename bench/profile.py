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
from bench.targets import FORM, Target, start

# Stages of a request, each matched on any frame of a sample's stack: ``(label, file
# fragment, function)``. A sample counts for every stage it is inside, so nested stages
# (the signature inside jwt.encode inside issue) overlap by design.
STAGES = (
    ("whole app (Observed.__call__)", "swarm_oauth/api/observe.py", "__call__"),
    ("  token endpoint (TokenEndpoint.__call__)", "swarm_oauth/api/token_endpoint.py", "__call__"),
    ("    parse form + request", "swarm_oauth/tokens/grant.py", "parse_"),
    ("    grant (secret check, scopes, issue)", "swarm_oauth/tokens/grant.py", "grant"),
    ("      verify_secret", "swarm_oauth/clients/secrets.py", "verify_secret"),
    ("      TokenIssuer.issue", "swarm_oauth/tokens/issuer.py", "issue"),
    ("        jwt.encode", "jwt/api_jwt.py", "encode"),
    ("          signature (cryptography)", "jwt/algorithms.py", "sign"),
    ("    send_json", "swarm_oauth/api/responses.py", "send_json"),
    ("  access log (logging)", "logging/__init__.py", "info"),
    ("  metrics (prometheus_client)", "prometheus_client/", ""),
    ("HTTP protocol (uvicorn httptools_impl)", "uvicorn/protocols/http/httptools_impl.py", ""),
    ("asyncio/uvloop machinery", "asyncio/", ""),
    ("store (sqlite3 via watcher)", "swarm_oauth/store/", ""),
)


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


def stage_shares(stacks: list[tuple[list[str], int]]) -> list[tuple[str, float]]:
    """Each stage's share of all samples."""
    total = sum(count for _, count in stacks) or 1
    shares = []
    for label, fragment, function in STAGES:
        inside = sum(
            count
            for frames, count in stacks
            if any(_matches(frame, fragment, function) for frame in frames)
        )
        shares.append((label, inside / total))
    return shares


def hottest(stacks: list[tuple[list[str], int]], top: int) -> list[tuple[str, float]]:
    """Functions by self time (the innermost Python frame of each sample)."""
    total = sum(count for _, count in stacks) or 1
    self_time: Counter[str] = Counter()
    for frames, count in stacks:
        self_time[frames[-1]] += count
    return [(frame, count / total) for frame, count in self_time.most_common(top)]


def summary(stacks: list[tuple[list[str], int]], top: int = 25) -> list[str]:
    """The profile as text."""
    samples = sum(count for _, count in stacks)
    lines = [f"{samples} samples (CPU only; idle threads excluded)", "", "stage: share of samples"]
    lines += [f"  {share:6.1%}  {label}" for label, share in stage_shares(stacks)]
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
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="swarm-oauth-profile-"))
    target = Target(args.target, args.alg if args.target == "ours" else "-", 1)
    running = start(target, workdir)
    out = workdir / "profile.collapsed"
    try:

        def load(seconds: float) -> wrk.Load:
            return wrk.run(
                running.token_url,
                connections=args.connections,
                seconds=seconds,
                body=FORM,
                authorization=running.authorization,
                cores=target.load_cores,
            )

        load(2)  # warm-up
        result: list[wrk.Load] = []
        # Load for a little longer than the sampling, so every sample is under load.
        loader = threading.Thread(target=lambda: result.append(load(args.seconds + 2)))
        loader.start()
        record(running.server.proc.pid, args.seconds, args.rate, out)
        loader.join()
    finally:
        running.server.stop()
    measured = result[0]
    print(
        f"{target.label}, 1 worker, {args.connections} conns, under py-spy at {args.rate} Hz: "
        f"{measured.rate:,.0f} tokens/s, p99 {measured.p99_ms:.1f} ms"
    )
    print("\n".join(summary(parse_collapsed(out.read_text()))))
    print(f"\ncollapsed stacks: {out}")
    return 0
