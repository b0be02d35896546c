"""The token benchmark's results as Markdown: a table, the ratios and the targets."""

from __future__ import annotations

import statistics

from bench.targets import Target
from bench.tokens import (
    COMBINED_TARGET,
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
        "| server | workers | conns | tokens/s | ± | p50 ms | p99 ms | CPU µs/token "
        "| of floor | of raw sign | of floor + sign | x reference | non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (target, conns), loads in results.loads.items():
        rate = statistics.median(load.rate for load in loads)
        one_core = target.workers == 1
        ours = one_core and target.kind == "ours"
        of_floor = results.ratios(target, conns, FLOOR) if one_core else []
        of_sign = results.ratios(target, conns, target.alg) if ours else []
        of_both = results.of_combined(target, conns, FLOOR) if ours else []
        vs_ref = results.ratios(target, conns, REFERENCE) if ours else []
        cpu = results.cpu_us.get((target, conns)) or [0.0]
        lines.append(
            f"| {target.label} | {target.workers} | {conns} | {rate:,.0f} "
            f"| {spread(load.rate for load in loads):.0%} "
            f"| {statistics.median(load.p50_ms for load in loads):.1f} "
            f"| {statistics.median(load.p99_ms for load in loads):.1f} "
            f"| {statistics.median(cpu):.0f} "
            f"| {_ratio(of_floor, True)} | {_ratio(of_sign, True)} | {_ratio(of_both, True)} "
            f"| {_ratio(vs_ref, False)} | {sum(load.non2xx for load in loads)} |"
        )
    return lines


def signing_lines(results: Results) -> list[str]:
    """Raw signing rates on one core."""
    parts = [
        f"{alg} {statistics.median(rates):,.0f}/s (±{spread(rates):.0%}; "
        f"{statistics.median(results.signing_cpu[alg]):,.0f} per CPU second)"
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
    """The targets for the defaults (issues 7 and 18), each with its verdict."""
    alg, workers, conns = HEADLINE
    ours = Target("ours", alg, workers)
    loads = results.loads.get((ours, conns))
    if not loads:
        return []
    rate = statistics.median(load.rate for load in loads)
    p99 = statistics.median(load.p99_ms for load in loads)
    of_both = statistics.median(results.of_combined(ours, conns, FLOOR) or [0.0])
    cpu_of_both = statistics.median(results.cpu_of_combined(ours, conns, FLOOR) or [0.0])
    vs_ref = statistics.median(results.ratios(ours, conns, REFERENCE) or [0.0])
    of_floor = statistics.median(results.ratios(ours, conns, FLOOR) or [0.0])
    of_sign = statistics.median(results.ratios(ours, conns, alg) or [0.0])

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    return [
        f"Targets (defaults: {alg}, {workers} worker, SQLite, {conns} connections, "
        "wrk on the other core, access log and metrics on):",
        f"- {rate:,.0f} tokens/s, {of_both:.0%} of the floor and a raw signature together "
        f"(target {COMBINED_TARGET:.0%}): " + verdict(of_both >= COMBINED_TARGET),
        f"  (counted in CPU time per token instead of tokens/s: {cpu_of_both:.0%})",
        f"- p99 {p99:.1f} ms (target < {P99_TARGET_MS:.0f} ms): " + verdict(p99 < P99_TARGET_MS),
        f"- {vs_ref:.1f}x the reference (target {REFERENCE_TARGET:.0f}x): "
        + verdict(vs_ref >= REFERENCE_TARGET),
        f"- {of_floor:.0%} of the floor, {of_sign:.0%} of the raw {alg} signing rate on one "
        "core (no target; context)",
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
        "for ES256. The floor reads the body with `parse_qsl` and answers a constant; "
        "*of floor + sign* is tokens/s times (1/floor rate + 1/raw signing rate), the "
        "share of the least a Python token endpoint can cost (issue 18). CPU µs/token is "
        "the server's user + system time over the requests wrk completed.",
        "",
        *token_table(results),
        "",
        *signing_lines(results),
        "",
        *query_lines(results),
        "",
        *target_lines(results),
    ]
