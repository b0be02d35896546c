"""Forward-auth: checks per second on one worker, beside the token endpoint's figure.

One ``swarm-oauth serve`` (ES256, SQLite, one worker pinned to core 0; wrk on core 1):
in every round ``POST /api/token``, ``GET /api/verify`` and ``HEAD /api/verify`` are
loaded in turn at the same connection count, so their ratios hold however the shared
machine drifts. The protocol answers a plain ``GET`` itself (``serving/direct.py``) and
leaves ``HEAD`` to the ASGI application: the same check and the same empty answer, so
``HEAD`` is the ASGI path's baseline. The forward-auth requests carry one token, as a
service presents the same token until it renews it; the in-process rates say what a
token's first check costs on top.
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
    """Every round's loads of each endpoint with the server's CPU time per request (µs),
    and the in-process check rates."""

    token: list[wrk.Load] = field(default_factory=list)
    verify: list[wrk.Load] = field(default_factory=list)
    verify_asgi: list[wrk.Load] = field(default_factory=list)
    cpu: dict[str, list[float]] = field(default_factory=dict)
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

        def forward_auth(seconds: float, method: str = "GET") -> wrk.Load:
            return wrk.run(
                verify_url,
                connections=CONNECTIONS,
                seconds=seconds,
                body="",
                authorization=token_auth,
                cores=TARGET.load_cores,
                method=method,
            )

        def timed(name: str, runs: list[wrk.Load], load: Callable[[], wrk.Load]) -> None:
            used = running.server.cpu_seconds()
            runs.append(outcome := load())
            cpu_us = (running.server.cpu_seconds() - used) / outcome.requests * 1e6
            results.cpu.setdefault(name, []).append(cpu_us)

        token_endpoint(plan.warmup)
        forward_auth(plan.warmup)
        forward_auth(plan.warmup, "HEAD")
        for round_ in range(1, plan.repeat + 1):
            results.load_average.append(os.getloadavg())
            progress(f"round {round_}/{plan.repeat}: token endpoint, forward-auth, in process")
            timed("token", results.token, lambda: token_endpoint(plan.seconds))
            # The two checks in turns, so that neither always follows the token load.
            checks = [
                ("verify", results.verify, lambda: forward_auth(plan.seconds)),
                ("verify_asgi", results.verify_asgi, lambda: forward_auth(plan.seconds, "HEAD")),
            ]
            for name, runs, load in checks[:: 1 if round_ % 2 else -1]:
                timed(name, runs, load)
            for name, value in check_rates(2 if plan.seconds > 2 else 1).items():
                results.checks.setdefault(name, []).append(value)
            results.load_average.append(os.getloadavg())
            time.sleep(0.5)
    finally:
        running.server.stop()
    return results


def render(plan: Plan, results: Results) -> list[str]:
    """The forward-auth section of the report."""
    loads = ", ".join(f"{a:.2f}" for a, _, _ in results.load_average)

    def row(name: str, runs: list[wrk.Load], cpu: str, ratio: str) -> str:
        return (
            f"| {name} | {statistics.median(r.rate for r in runs):,.0f} "
            f"| {spread(r.rate for r in runs):.0%} "
            f"| {statistics.median(results.cpu[cpu]):.0f} "
            f"| {statistics.median(r.p50_ms for r in runs):.1f} "
            f"| {statistics.median(r.p99_ms for r in runs):.1f} "
            f"| {ratio} | {sum(r.non2xx for r in runs)} |"
        )

    def ratio(runs: list[wrk.Load], baseline: list[wrk.Load]) -> str:
        return ratio_of([r.rate for r in runs], [b.rate for b in baseline])

    def ratio_of(values: list[float], baseline: list[float]) -> str:
        ratios = [v / b for v, b in zip(values, baseline, strict=True)]
        text = f"{statistics.median(ratios):.2f}x"
        if len(ratios) > 1:
            text += f" ±{(max(ratios) - min(ratios)) / 2:.2f}"
        return text

    checks = {name: statistics.median(values) for name, values in results.checks.items()}
    return [
        "## Forward-auth",
        "",
        f"One `swarm-oauth serve` (ES256, SQLite, 1 worker pinned to core 0; wrk, one "
        f"thread, on core 1; {CONNECTIONS} connections, access log and metrics on). In each "
        f"of {plan.repeat} round(s) the three are loaded in turn (the two checks in "
        f"alternating order), {plan.seconds:g} s each "
        f"after a {plan.warmup:g} s warm-up; figures are medians over rounds, ratios the "
        "medians of per-round ratios, ± half the min-max range. `/api/verify` carries one "
        "token (with `audience`), as a service presents the same token until it renews it. "
        "The protocol answers a plain `GET` itself; `HEAD`, the same check with the same "
        "empty answer, goes through the ASGI application, as every check did before. "
        f"1-minute load average at each round's start and end: {loads}.",
        "",
        "| endpoint | requests/s | ± | CPU µs a request | p50 ms | p99 ms | x token endpoint "
        "| non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        row("`POST /api/token` (a token issued)", results.token, "token", "1.00x"),
        row(
            "`GET /api/verify` (a forward-auth check)",
            results.verify,
            "verify",
            ratio(results.verify, results.token),
        ),
        row(
            "`HEAD /api/verify` (the same check through ASGI)",
            results.verify_asgi,
            "verify_asgi",
            ratio(results.verify_asgi, results.token),
        ),
        "",
        f"The protocol's own answer: {ratio(results.verify, results.verify_asgi)} the checks "
        "per second of the same check through ASGI, at "
        f"{ratio_of(results.cpu['verify'], results.cpu['verify_asgi'])} its CPU time a "
        "request (the server process's user and system time over the requests wrk completed).",
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
