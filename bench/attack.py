"""``python -m bench attack``: legitimate clients ask for tokens while one process attacks.

    python -m bench attack              # 2 rounds of two 30 s phases, about 2.5 minutes
    python -m bench attack --quick      # one round of two 12 s phases

A real ``swarm-oauth serve`` (SQLite, ES256, one worker, its default limits) is pinned to
core 0. Legitimate clients (threads of this process, keep-alive, client_secret_basic)
ask for tokens in a loop for one phase alone and for one phase while an attacker process
(asyncio, raw sockets) does all of this at once, against 127.0.0.1 only and bounded in
time and count (rounds alternate the two phases, so a shared machine's drift hits both):

- floods unknown, well-formed client ids on several keep-alive connections;
- sends oversized ids (a multi-megabyte ``Authorization: Basic`` header);
- holds slow sockets open, each sending one header line a second, reopening each one the
  server closes;
- sends oversized headers (one field over the cap, or more fields than allowed).

Legitimate clients and the attacker share core 1, so client-side CPU is part of the
latencies under attack. Reported: the legitimate clients' success rate (target 100%),
their p50/p99 beside the same clients without the attack, the server's peak RSS (target
under 120 MB), and what each attack sent and got back. The table replaces the "Hostile
load" section of ``bench/RESULTS.md`` (appended when absent) unless ``--no-write``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import itertools
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import machine, results
from bench.procs import pinned
from bench.targets import FORM, LOAD_CORE, Running, Target, start
from swarm_oauth.serving.limits import (
    MAX_CONNECTIONS,
    MAX_HEADER_BYTES,
    MAX_HEADERS,
    REQUEST_TIMEOUT_SECONDS,
)

SECTION = "## Hostile load"
HOST = "127.0.0.1"  # loopback only: this is a load generator aimed at our own server
RSS_TARGET_MB = 120


@dataclass(frozen=True)
class Plan:
    """How long and how hard."""

    seconds: float
    rounds: int = 1
    legit_threads: int = 4
    flood_connections: int = 8
    flood_max_requests: int = 200_000
    oversized_ids: int = 20
    oversized_id_bytes: int = 5 * 1024 * 1024
    slow_sockets: int = 200
    big_header_pause: float = 0.02

    @classmethod
    def full(cls) -> Plan:
        return cls(seconds=30, rounds=2)

    @classmethod
    def quick(cls) -> Plan:
        return cls(seconds=12, oversized_ids=8, slow_sockets=100)


# -- the attacker (its own process) ----------------------------------------------------------


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """One response: its status, and whether the server keeps the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    length = next((int(line[15:]) for line in lines if line.startswith(b"content-length:")), 0)
    await reader.readexactly(length)
    return _status(head), b"connection: close" not in lines


def _token_request(authorization: bytes) -> bytes:
    return (
        b"POST /api/token HTTP/1.1\r\nHost: t\r\nAuthorization: " + authorization + b"\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % len(FORM) + FORM.encode()
    )


async def _flood(port: int, stop: float, budget: list[int], counts: Counter[str]) -> None:
    """Unknown, well-formed ids, one after the other on a keep-alive connection."""
    writer = None
    while time.monotonic() < stop and budget[0] > 0:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            keep = True
            while keep and time.monotonic() < stop and budget[0] > 0:
                budget[0] -= 1
                pair = f"unknown-{secrets.token_hex(8)}:x".encode()
                writer.write(_token_request(b"Basic " + base64.b64encode(pair)))
                status, keep = await _answer(reader)
                counts[str(status)] += 1
        except (OSError, asyncio.IncompleteReadError):
            counts["reset"] += 1
        finally:
            if writer is not None:
                writer.close()


async def _oversized_id(port: int, size: int, counts: Counter[str]) -> None:
    """A Basic header of ``size`` bytes: the id alone is megabytes. The answer is read
    while sending, as the server answers (and closes) long before the end."""
    reader, writer = await asyncio.open_connection(HOST, port)
    answer = asyncio.ensure_future(reader.readuntil(b"\r\n\r\n"))
    try:
        writer.write(b"POST /api/token HTTP/1.1\r\nHost: t\r\nAuthorization: Basic ")
        chunk = base64.b64encode(b"\xff" * 49152)  # 64 KiB of base64
        for _ in range(size // len(chunk)):
            if answer.done():
                break
            writer.write(chunk)
            await writer.drain()
        writer.write(b"\r\n\r\n")
    except OSError:
        pass  # closed by the server while the header was still coming
    try:
        counts[str(_status(await asyncio.wait_for(answer, 10)))] += 1
    except (OSError, asyncio.IncompleteReadError, TimeoutError):
        counts["reset"] += 1
    finally:
        writer.close()


async def _oversized_ids(port: int, plan: Plan, stop: float, counts: Counter[str]) -> None:
    pause = plan.seconds / max(1, plan.oversized_ids)
    for _ in range(plan.oversized_ids):
        if time.monotonic() >= stop:
            return
        await _oversized_id(port, plan.oversized_id_bytes, counts)
        await asyncio.sleep(pause)


async def _slow_socket(port: int, stop: float, counts: Counter[str]) -> None:
    """One header line a second, never finishing; reopened whenever the server closes."""
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
        except OSError:
            counts["refused"] += 1
            await asyncio.sleep(1)
            continue
        counts["opened"] += 1
        try:
            writer.write(b"GET /api/cert HTTP/1.1\r\nHost: t\r\n")
            line = 0
            while time.monotonic() < stop:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=1)
                except TimeoutError:
                    line += 1
                    writer.write(b"X-Slow-%d: v\r\n" % line)
                    continue
                counts[str(_status(data)) if data else "closed"] += 1
                break
        except OSError:
            counts["reset"] += 1
        finally:
            writer.close()


async def _big_headers(port: int, plan: Plan, stop: float, counts: Counter[str]) -> None:
    """A field over the cap and more fields than allowed, alternately."""
    too_long = b"X-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n"
    too_many = b"".join(b"X-%d: v\r\n" % n for n in range(MAX_HEADERS + 1))
    for n in itertools.count():
        if time.monotonic() >= stop:
            return
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            writer.write(b"GET /api/cert HTTP/1.1\r\nHost: t\r\n" + (too_long, too_many)[n % 2])
            writer.write(b"\r\n")
            counts[str(_status(await reader.readuntil(b"\r\n\r\n")))] += 1
            writer.close()
        except (OSError, asyncio.IncompleteReadError):
            counts["reset"] += 1
        await asyncio.sleep(plan.big_header_pause)


async def attack(port: int, plan: Plan) -> dict[str, dict[str, int]]:
    """Every attack at once for ``plan.seconds``; what each sent and got back."""
    stop = time.monotonic() + plan.seconds
    counts = {kind: Counter[str]() for kind in ("flood", "oversized_id", "slow", "big_headers")}
    budget = [plan.flood_max_requests]
    await asyncio.gather(
        *(_flood(port, stop, budget, counts["flood"]) for _ in range(plan.flood_connections)),
        _oversized_ids(port, plan, stop, counts["oversized_id"]),
        *(_slow_socket(port, stop, counts["slow"]) for _ in range(plan.slow_sockets)),
        _big_headers(port, plan, stop, counts["big_headers"]),
    )
    return {kind: dict(found) for kind, found in counts.items()}


# -- the legitimate clients and the measurement ----------------------------------------------


@dataclass
class Phase:
    """What the legitimate clients saw in one phase, and the server's memory after it."""

    latencies_ms: list[float]
    failures: Counter[str]
    seconds: float
    peak_rss_mb: float
    attack: dict[str, dict[str, int]] | None = None

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.failures.values())

    @property
    def success(self) -> float:
        return len(self.latencies_ms) / self.requests if self.requests else 0.0

    @classmethod
    def merged(cls, phases: list[Phase]) -> Phase:
        """The rounds of one kind of phase as one: their requests pooled, the peak RSS
        the highest, the attack's counts summed."""
        attack: dict[str, Counter[str]] = {}
        for phase in phases:
            for kind, found in (phase.attack or {}).items():
                attack.setdefault(kind, Counter()).update(found)
        return cls(
            [ms for phase in phases for ms in phase.latencies_ms],
            sum((phase.failures for phase in phases), Counter()),
            sum(phase.seconds for phase in phases),
            max(phase.peak_rss_mb for phase in phases),
            {kind: dict(found) for kind, found in attack.items()} or None,
        )

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _legit(running: Running, stop: float, latencies: list[float], failures: Counter[str]) -> None:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    headers["authorization"] = running.authorization
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < stop:
            started = time.perf_counter()
            try:
                response = client.post(running.token_url, content=FORM, headers=headers)
            except httpx.HTTPError as exc:
                failures[type(exc).__name__] += 1
                continue
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                failures[str(response.status_code)] += 1


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def run_phase(running: Running, plan: Plan, *, attacked: bool) -> Phase:
    """The legitimate clients for ``plan.seconds``, with the attacker process if asked."""
    attacker = None
    if attacked:
        cmd = [sys.executable, "-m", "bench.attack", "attacker", str(running.server.port)]
        attacker = subprocess.Popen(
            pinned([*cmd, str(plan.seconds), json.dumps(plan.__dict__)], LOAD_CORE),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)  # the attack is under way before the clients start
    latencies: list[float] = []
    failures: Counter[str] = Counter()
    started = time.monotonic()
    stop = started + plan.seconds - (1 if attacked else 0)
    threads = [
        threading.Thread(target=_legit, args=(running, stop, latencies, failures))
        for _ in range(plan.legit_threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    report = None
    if attacker is not None:
        out, _ = attacker.communicate(timeout=plan.seconds + 120)
        report = json.loads(out)
    return Phase(latencies, failures, seconds, peak_rss_mb(running.server.proc.pid), report)


# -- the report --------------------------------------------------------------------------------


def _answers(found: dict[str, int]) -> str:
    return ", ".join(f"{key} x{value:,}" for key, value in sorted(found.items())) or "none"


def render(plan: Plan, quick: bool, calm: Phase, attacked: Phase, loads: list[float]) -> list[str]:
    """The section for RESULTS.md."""
    when = datetime.datetime.now(datetime.UTC)
    assert attacked.attack is not None
    attack = attacked.attack
    lines = [
        SECTION,
        "",
        f"`python -m bench attack` ({'--quick' if quick else 'full'}), {when:%Y-%m-%d %H:%M} UTC,"
        f" {plan.rounds} round(s) of {plan.seconds:g} s per phase, alone then under attack; "
        "requests of all rounds pooled. Server: `swarm-oauth serve`, SQLite, ES256, one worker "
        f"pinned to core 0, default limits ({MAX_HEADER_BYTES:,} header bytes, {MAX_HEADERS} "
        f"fields, {REQUEST_TIMEOUT_SECONDS:g} s request timeout, {MAX_CONNECTIONS} "
        f"connections). {plan.legit_threads} legitimate clients (threads, keep-alive, "
        "client_secret_basic) and the attacker share core 1; the attacker aims at 127.0.0.1 "
        "only. 1-minute load average at the start and the end: "
        + ", ".join(f"{load:.2f}" for load in loads)
        + ".",
        *machine.describe(),
        "",
        "| legitimate clients | requests | success | tokens/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, phase in (("alone", calm), ("under attack", attacked)):
        lines.append(
            f"| {name} | {phase.requests:,} | {phase.success:.2%} "
            f"| {len(phase.latencies_ms) / phase.seconds:,.0f} "
            f"| {phase.percentile(0.5):.1f} | {phase.percentile(0.99):.1f} |"
        )
    failures = attacked.failures + calm.failures
    met = attacked.peak_rss_mb < RSS_TARGET_MB
    lines += [
        "",
        f"Ratios under attack: p50 {attacked.percentile(0.5) / calm.percentile(0.5):.1f}x, "
        f"p99 {attacked.percentile(0.99) / calm.percentile(0.99):.1f}x the clients alone. "
        f"Failed legitimate requests: {_answers(dict(failures))}.",
        "",
        "| server | value | target | ok |",
        "|---|---:|---|---|",
        f"| peak RSS before the first attack (MB) | {calm.peak_rss_mb:.1f} |  |  |",
        f"| peak RSS over the run (MB) | {attacked.peak_rss_mb:.1f} | < {RSS_TARGET_MB} MB "
        f"| {'yes' if met else '**no**'} |",
        f"| legitimate success under attack | {attacked.success:.2%} | 100% "
        f"| {'yes' if attacked.success == 1 else '**no**'} |",
        "",
        "| attack | sent | answers |",
        "|---|---:|---|",
        f"| unknown client ids, {plan.flood_connections} keep-alive connections "
        f"| {sum(attack['flood'].values()):,} | {_answers(attack['flood'])} |",
        f"| oversized ids ({plan.oversized_id_bytes // 2**20} MiB Basic header) "
        f"| {sum(attack['oversized_id'].values()):,} | {_answers(attack['oversized_id'])} |",
        f"| slow sockets ({plan.slow_sockets} held, a header line a second, reopened) "
        f"| {attack['slow'].get('opened', 0):,} "
        f"| {_answers({k: v for k, v in attack['slow'].items() if k != 'opened'})} |",
        f"| oversized headers (a field over the cap / {MAX_HEADERS + 1} fields) "
        f"| {sum(attack['big_headers'].values()):,} | {_answers(attack['big_headers'])} |",
    ]
    return lines


def main(argv: list[str]) -> int:
    if argv[:1] == ["attacker"]:
        port, seconds, fields = int(argv[1]), float(argv[2]), json.loads(argv[3])
        plan = Plan(**{**fields, "seconds": seconds})
        print(json.dumps(asyncio.run(attack(port, plan))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench attack", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="two 12 s phases")
    parser.add_argument("--no-write", action="store_true", help="do not write RESULTS.md")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args(argv)
    plan = Plan.quick() if args.quick else Plan.full()
    os.sched_setaffinity(0, {int(LOAD_CORE)})
    workdir = Path(tempfile.mkdtemp(prefix="swarm-oauth-attack-"))
    try:
        running = start(Target("ours", "ES256", 1), workdir)
        calms, attacks = [], []
        loads = [os.getloadavg()[0]]
        try:
            for round_ in range(1, plan.rounds + 1):
                print(f"round {round_}: clients alone", file=sys.stderr, flush=True)
                calms.append(run_phase(running, plan, attacked=False))
                print(f"round {round_}: under attack", file=sys.stderr, flush=True)
                attacks.append(run_phase(running, plan, attacked=True))
        finally:
            running.server.stop()
        loads.append(os.getloadavg()[0])
    finally:
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    calm, attacked = Phase.merged(calms), Phase.merged(attacks)
    # VmHWM only grows: what the server needed before any attack is the first round's.
    calm.peak_rss_mb = calms[0].peak_rss_mb
    lines = render(plan, args.quick, calm, attacked, loads)
    print("\n".join(lines))
    if not args.no_write:
        results.write_sections(lines)
        print(f"written to {results.RESULTS}", file=sys.stderr)
    return 0 if attacked.success == 1 and attacked.peak_rss_mb < RSS_TARGET_MB else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
