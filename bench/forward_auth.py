"""Forward-auth: checks per second on one worker, beside the token endpoint's figure.

One ``swarm-oauth serve`` (ES256, SQLite, one worker pinned to core 0; wrk on core 1):
in every round ``POST /api/token`` and ``GET /api/verify`` are loaded in turn at the same
connection count, so their ratio holds however the shared machine drifts. The
forward-auth requests carry one token, as a service presents the same token until it
renews it; the in-process rates say what a token's first check costs on top.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from bench import wrk
from bench.targets import FORM, REPO, SERVER_CORE, Running, Target, start
from bench.tokens import Plan, spread

CONNECTIONS = 32
TARGET = Target("ours", "ES256", 1)


@dataclass
class Results:
    """Every round's loads of both endpoints, and the in-process check rates."""

    token: list[wrk.Load] = field(default_factory=list)
    verify: list[wrk.Load] = field(default_factory=list)
    checks: dict[str, list[float]] = field(default_factory=dict)
    load_average: list[tuple[float, float, float]] = field(default_factory=list)


def check_rates(seconds: float) -> dict[str, float]:
    """``bench.verifying``'s checks per second on the server's core."""
    done = subprocess.run(
        ["taskset", "-c", SERVER_CORE, sys.executable, "-m", "bench.verifying", str(seconds)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    return {name: float(value) for name, value in json.loads(done.stdout).items()}


def bearer(running: Running) -> str:
    """A token of the bench client, as the Authorization value a service would send."""
    response = httpx.post(
        running.token_url,
        content=FORM,
        headers={
            "content-type": "application/x-www-form-urlencoded",
            "authorization": running.authorization,
        },
        timeout=10,
    )
    response.raise_for_status()
    return f"Bearer {response.json()['access_token']}"


def measure(plan: Plan, workdir: Path, progress: Callable[[str], None]) -> Results:
    """``plan.repeat`` rounds of both endpoints on one server."""
    results = Results()
    running = start(TARGET, workdir)
    try:
        token_auth = bearer(running)
        # The bench client has no audiences of its own: its tokens name the issuer.
        verify_url = f"{running.server.url}/api/verify?audience={quote(running.server.url)}"
        assert httpx.get(verify_url, headers={"authorization": token_auth}).status_code == 200

        def token_endpoint(seconds: float) -> wrk.Load:
            return wrk.run(
                running.token_url,
                connections=CONNECTIONS,
                seconds=seconds,
                body=FORM,
                authorization=running.authorization,
                cores=TARGET.load_cores,
            )

        def forward_auth(seconds: float) -> wrk.Load:
            return wrk.run(
                verify_url,
                connections=CONNECTIONS,
                seconds=seconds,
                body="",
                authorization=token_auth,
                cores=TARGET.load_cores,
                method="GET",
            )

        token_endpoint(plan.warmup)
        forward_auth(plan.warmup)
        for round_ in range(1, plan.repeat + 1):
            results.load_average.append(os.getloadavg())
            progress(f"round {round_}/{plan.repeat}: token endpoint, forward-auth, in process")
            results.token.append(token_endpoint(plan.seconds))
            results.verify.append(forward_auth(plan.seconds))
            for name, value in check_rates(2 if plan.seconds > 2 else 1).items():
                results.checks.setdefault(name, []).append(value)
            results.load_average.append(os.getloadavg())
            time.sleep(0.5)
    finally:
        running.server.stop()
    return results


def render(plan: Plan, results: Results) -> list[str]:
    """The forward-auth section of the report."""
    ratios = [v.rate / t.rate for t, v in zip(results.token, results.verify, strict=True)]
    loads = ", ".join(f"{a:.2f}" for a, _, _ in results.load_average)

    def row(name: str, runs: list[wrk.Load], ratio: str) -> str:
        return (
            f"| {name} | {statistics.median(r.rate for r in runs):,.0f} "
            f"| {spread(r.rate for r in runs):.0%} "
            f"| {statistics.median(r.p50_ms for r in runs):.1f} "
            f"| {statistics.median(r.p99_ms for r in runs):.1f} "
            f"| {ratio} | {sum(r.non2xx for r in runs)} |"
        )

    ratio = f"{statistics.median(ratios):.1f}x"
    if len(ratios) > 1:
        ratio += f" ±{(max(ratios) - min(ratios)) / 2:.1f}"
    checks = {name: statistics.median(values) for name, values in results.checks.items()}
    return [
        "## Forward-auth",
        "",
        f"One `swarm-oauth serve` (ES256, SQLite, 1 worker pinned to core 0; wrk, one "
        f"thread, on core 1; {CONNECTIONS} connections, access log and metrics on). In each "
        f"of {plan.repeat} round(s) both endpoints are loaded in turn, {plan.seconds:g} s each "
        f"after a {plan.warmup:g} s warm-up; figures are medians over rounds, the ratio the "
        "median of per-round ratios, ± half the min-max range. `GET /api/verify` carries one "
        "token (with `audience`), as a service presents the same token until it renews it. "
        f"1-minute load average at each round's start and end: {loads}.",
        "",
        "| endpoint | requests/s | ± | p50 ms | p99 ms | x token endpoint | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|",
        row("`POST /api/token` (a token issued)", results.token, "1.0x"),
        row("`GET /api/verify` (a forward-auth check)", results.verify, ratio),
        "",
        "The same checks without HTTP on one core (`TokenVerifier`, `bench/verifying.py`): "
        f"{checks.get('remembered', 0):,.0f}/s for a token already seen, "
        f"{checks.get('first_sight', 0):,.0f}/s for a token seen for the first time (its "
        "ES256 signature verified), which a process pays once per token.",
    ]


def part(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The forward-auth section for ``python -m bench``."""
    plan = Plan.quick(args.repeat) if args.quick else Plan.full(args.repeat)
    return render(plan, measure(plan, workdir, lambda m: print(m, file=sys.stderr, flush=True)))
