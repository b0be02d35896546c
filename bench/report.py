"""The token benchmark's results as Markdown: a table, the ratios and the targets."""

from __future__ import annotations

import statistics

from bench.targets import Target
from bench.tokens import (
    FLOOR_STRETCH,
    FLOOR_TARGET,
    HEADLINE,
    P99_TARGET_MS,
    REFERENCE_TARGET,
    Plan,
    Results,
    spread,
)

FLOOR = Target("floor", "-", 1)
REFERENCE = Target("reference", "ES256", 1)


def _ratio(values: list[float], percent: bool) -> str:
    """The median of per-round ratios, with half their range when there are several."""
    if not values:
        return ""
    median = statistics.median(values)
    text = f"{median:.0%}" if percent else f"{median:.1f}x"
    if len(values) > 1:
        half = (max(values) - min(values)) / 2
        text += f" ±{half:.0%}" if percent else f" ±{half:.1f}"
    return text


def token_table(results: Results) -> list[str]:
    """One row per target and connection count; ratios against the same connections."""
    lines = [
        "| server | workers | conns | tokens/s | ± | p50 ms | p99 ms | of floor | of raw sign "
        "| x reference | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (target, conns), loads in results.loads.items():
        rate = statistics.median(load.rate for load in loads)
        one_core = target.workers == 1
        of_floor = results.ratios(target, conns, FLOOR) if one_core else []
        of_sign = results.ratios(target, conns, target.alg) if one_core else []
        vs_ref = (
            results.ratios(target, conns, REFERENCE) if one_core and target.kind == "ours" else []
        )
        lines.append(
            f"| {target.label} | {target.workers} | {conns} | {rate:,.0f} "
            f"| {spread(load.rate for load in loads):.0%} "
            f"| {statistics.median(load.p50_ms for load in loads):.1f} "
            f"| {statistics.median(load.p99_ms for load in loads):.1f} "
            f"| {_ratio(of_floor, True)} | {_ratio(of_sign, True)} | {_ratio(vs_ref, False)} "
            f"| {sum(load.non2xx for load in loads)} |"
        )
    return lines


def signing_lines(results: Results) -> list[str]:
    """Raw signing rates on one core."""
    parts = [
        f"{alg} {statistics.median(rates):,.0f}/s (±{spread(rates):.0%})"
        for alg, rates in results.signing.items()
    ]
    return ["Raw `cryptography` signatures on one core: " + ", ".join(parts) + "."]


def query_lines(results: Results) -> list[str]:
    """What a token costs the store."""
    q = results.queries
    if q is None:
        return []
    return [
        f"Store queries per token, counted with a SQLite trace on a real in-process server: "
        f"**{q.per_token:g}** over {q.tokens} tokens for a cached client "
        f"({q.client_queries} client lookups, {q.other_queries} other statements); "
        f"{q.cold_client_queries} for a client's first token (cache empty). The change "
        f"watcher polls the store independently of load: {q.poll_queries_per_second:.1f} "
        "statements/s.",
    ]


def target_lines(results: Results) -> list[str]:
    """Issue 7's targets for the defaults, each with its verdict."""
    alg, workers, conns = HEADLINE
    ours = Target("ours", alg, workers)
    loads = results.loads.get((ours, conns))
    if not loads:
        return []
    rate = statistics.median(load.rate for load in loads)
    p99 = statistics.median(load.p99_ms for load in loads)
    of_floor = statistics.median(results.ratios(ours, conns, FLOOR) or [0.0])
    vs_ref = statistics.median(results.ratios(ours, conns, REFERENCE) or [0.0])
    of_sign = statistics.median(results.ratios(ours, conns, alg) or [0.0])

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    floor_verdict = verdict(of_floor >= FLOOR_TARGET)
    if of_floor >= FLOOR_TARGET:
        floor_verdict += f", stretch {FLOOR_STRETCH:.0%} " + verdict(of_floor >= FLOOR_STRETCH)
    return [
        f"Targets (defaults: {alg}, {workers} worker, SQLite, {conns} connections, "
        "wrk on the other core):",
        f"- {rate:,.0f} tokens/s, {of_floor:.0%} of the floor (target {FLOOR_TARGET:.0%}): "
        + floor_verdict,
        f"- p99 {p99:.1f} ms (target < {P99_TARGET_MS:.0f} ms): " + verdict(p99 < P99_TARGET_MS),
        f"- {vs_ref:.1f}x the reference (target {REFERENCE_TARGET:.0f}x): "
        + verdict(vs_ref >= REFERENCE_TARGET),
        f"- {of_sign:.0%} of the raw {alg} signing rate on one core (no target; context)",
    ]


def render(plan: Plan, results: Results) -> list[str]:
    """The token benchmark's section of the report."""
    loads = ", ".join(f"{a:.2f}" for a, _, _ in results.load_average)
    return [
        "## Token endpoint",
        "",
        f"{plan.seconds:g} s per run after a {plan.warmup:g} s warm-up, {plan.repeat} "
        f"round(s); figures are medians over rounds and ratios medians of per-round "
        "ratios, ± is half the min-max range over rounds. "
        f"1-minute load average at each round's start and end: {loads}.",
        "One worker: server pinned to core 0, wrk (one thread) to core 1. More workers: "
        "nothing pinned, wrk shares the cores with them. Ratios compare runs at the same "
        "connection count; the reference signs ES256, so its ratio is like-for-like only "
        "for ES256. At 128 connections p99 is set by rare 0.2-1 s stalls that the floor "
        "shows as well (TCP retransmissions on loopback under load, see `nstat`).",
        "",
        *token_table(results),
        "",
        *signing_lines(results),
        "",
        *query_lines(results),
        "",
        *target_lines(results),
    ]
