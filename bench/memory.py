"""``python -m bench memory``: resident memory of each process kind, idle and loaded.

The tokens role and the clients role share one SQLite data dir, as on one machine; a
registrar (when the Docker Engine is in swarm mode) follows the clients role. Each
process's resident set (``VmRSS``) is read idle, after ``--clients`` clients were
registered (the registrar then makes a full pass, which lists them all), and after
``--tokens`` and twice ``--tokens`` tokens spread over those clients (so the tokens
role caches every one of them). The floor (a bare Starlette app on uvicorn) is the
baseline, idle and after as many requests.

    python -m bench memory [--quick]
    python -m bench.memory [--clients 10000] [--tokens 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import docker
import httpx

from bench import machine, wrk
from bench.procs import Server, free_port, group_rss_bytes
from bench.targets import FORM, LOAD_CORE, SERVER_CORE, Target, basic, start

# Issue 18's targets: a tokens worker under 80 MB, and no growth from N to 2N tokens.
TOKENS_RSS_TARGET_MB = 80.0
GROWTH_TOLERANCE_MB = 1.0
MB = 1024 * 1024
ADD_THREADS = 8
CONNECTIONS = 32

Progress = Callable[[str], None]


@dataclass
class Figures:
    """RSS in MB by process kind and stage (in the order measured)."""

    rss: dict[str, dict[str, float]] = field(default_factory=dict)
    stages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def record(self, stage: str, servers: dict[str, Server]) -> None:
        if stage not in self.stages:
            self.stages.append(stage)
        for kind, server in servers.items():
            sizes = group_rss_bytes(server.proc.pid)
            # One process per kind here (one worker); its own figure, not its children's.
            self.rss.setdefault(kind, {})[stage] = sizes.get(server.proc.pid, 0) / MB


def _serve(role: str, data_dir: Path, workdir: Path, cores: str | None) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "swarm_oauth", "serve", "--role", role,
           "--data-dir", str(data_dir), "--port", str(port)]  # fmt: skip
    server = Server(role, cmd, port, workdir / f"memory-{role}.log", cores=cores)
    _wait_ready(server)
    return server


def _wait_ready(server: Server, timeout: float = 60.0) -> None:
    server.wait_listening(timeout)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{server.name} did not become ready")


def _swarm_available() -> bool:
    try:
        client = docker.from_env(timeout=10)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.info()["Swarm"]["LocalNodeState"] == "active")
    except docker.errors.DockerException:
        return False
    finally:
        client.close()


def _registrar(clients: Server, tokens: Server, data_dir: Path, workdir: Path) -> Server:
    port = free_port()
    # A selector no service carries: the registrar watches an empty swarm, but its full
    # passes list every client of the clients role.
    cmd = [sys.executable, "-m", "swarm_oauth", "registrar", "--port", str(port),
           "--clients-url", clients.url, "--token-url", f"{tokens.url}/api/token",
           "--admin-token-file", str(data_dir / "admin-token"),
           "--selector", f"swarm-oauth.client=bench-memory-{port}"]  # fmt: skip
    server = Server("registrar", cmd, port, workdir / "memory-registrar.log")
    _wait_ready(server)
    return server


def _add_clients(clients: Server, data_dir: Path, count: int, auth_file: Path) -> None:
    """Register ``count`` clients and write their Basic credentials, one a line."""
    admin = (data_dir / "admin-token").read_text().strip()

    def add(numbers: range) -> list[str]:
        lines = []
        with httpx.Client(
            base_url=clients.url, headers={"authorization": f"Bearer {admin}"}, timeout=30
        ) as http:
            for n in numbers:
                client_id = f"svc-{n:06d}"
                response = http.post("/api/clients/add", json={"client_id": client_id})
                response.raise_for_status()
                lines.append(basic(client_id, response.json()["client_secret"]))
        return lines

    share = -(-count // ADD_THREADS)
    with ThreadPoolExecutor(ADD_THREADS) as pool:
        parts = pool.map(add, [range(i, min(i + share, count)) for i in range(0, count, share)])
        auth_file.write_text("\n".join(line for part in parts for line in part) + "\n")


def _load_until(
    url: str, total: int, done: int, auth: str | Path, progress: Progress, label: str
) -> int:
    """Send token requests until ``total`` succeeded (``done`` already had); the count."""
    rate = 2000.0
    while done < total:
        seconds = max(1.0, min(20.0, (total - done) / rate))
        load = wrk.run(
            url,
            connections=CONNECTIONS,
            seconds=seconds,
            body=FORM,
            authorization=auth if isinstance(auth, str) else "",
            auth_file=auth if isinstance(auth, Path) else None,
            cores=LOAD_CORE,
        )
        if load.non2xx or load.socket_errors:
            raise RuntimeError(f"{label}: {load.non2xx} non-2xx, {load.socket_errors} errors")
        done += load.requests
        rate = max(load.rate, 100.0)
        progress(f"  {label}: {done:,} of {total:,}")
    return done


def measure(clients_count: int, tokens: int, workdir: Path, progress: Progress) -> Figures:
    """Every process kind idle, after the clients, after ``tokens`` and twice as many."""
    figures = Figures()
    data_dir = workdir / "memory-data"
    floor = start(Target("floor", "-", 1), workdir)
    servers: dict[str, Server] = {"floor (baseline)": floor.server}
    try:
        servers["clients role"] = _serve("clients", data_dir, workdir, None)
        servers["tokens role"] = tokens_role = _serve("tokens", data_dir, workdir, SERVER_CORE)
        if _swarm_available():
            servers["registrar"] = _registrar(
                servers["clients role"], tokens_role, data_dir, workdir
            )
        else:
            figures.notes.append("no Docker Engine in swarm mode here: the registrar is left out")
        time.sleep(3)
        figures.record("idle", servers)

        progress(f"memory: registering {clients_count:,} clients")
        auth_file = workdir / "memory-auth.txt"
        _add_clients(servers["clients role"], data_dir, clients_count, auth_file)
        if "registrar" in servers:
            httpx.post(f"{servers['registrar'].url}/v1/reconcile", timeout=600).raise_for_status()
        figures.record(f"{clients_count:,} clients", servers)

        token_url = f"{tokens_role.url}/api/token"
        issued = floor_done = 0
        for goal in (tokens, 2 * tokens):
            progress(f"memory: tokens up to {goal:,}")
            issued = _load_until(token_url, goal, issued, auth_file, progress, "tokens")
            floor_done = _load_until(
                floor.token_url, goal, floor_done, floor.authorization, progress, "floor"
            )
            figures.record(f"{goal:,} tokens", servers)
        figures.notes.append(
            f"{issued:,} tokens issued in all (over {clients_count:,} clients), "
            f"{floor_done:,} floor requests"
        )
    finally:
        for server in servers.values():
            server.stop()
    return figures


def render(figures: Figures, clients_count: int, tokens: int) -> list[str]:
    """The memory section of the report."""
    header = " | ".join(f"{stage} MB" for stage in figures.stages)
    lines = [
        "## Memory",
        "",
        f"`python -m bench memory`: resident memory (`VmRSS`) of each process kind, one "
        "worker each, SQLite shared by the clients and tokens roles. Stages in order: idle; "
        f"after {clients_count:,} clients registered through the clients API (and a full "
        f"registrar pass, which lists them all); after {tokens:,} and {2 * tokens:,} tokens "
        "spread over those clients (each client asks in turn, so the tokens role caches "
        "every one). The floor, a bare Starlette app on uvicorn, answers as many requests. "
        "*x floor* compares each process's last figure with the floor's.",
        *(f"{note}." for note in figures.notes),
        "",
        f"| process | {header} | growth from {tokens:,} to {2 * tokens:,} tokens | x floor |",
        "|---|" + "---:|" * (len(figures.stages) + 2),
    ]
    floor = figures.rss.get("floor (baseline)", {})
    last = figures.stages[-1]
    before_last = figures.stages[-2]
    for kind, by_stage in figures.rss.items():
        cells = " | ".join(f"{by_stage.get(stage, 0):.1f}" for stage in figures.stages)
        growth = by_stage[last] - by_stage[before_last]
        ratio = by_stage[last] / floor[last] if floor.get(last) else 0.0
        lines.append(f"| {kind} | {cells} | {growth:+.1f} MB | {ratio:.1f}x |")
    tokens_rss = figures.rss["tokens role"]
    peak = max(tokens_rss.values())
    growth = tokens_rss[last] - tokens_rss[before_last]

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    lines += [
        "",
        "Targets (issue 18):",
        f"- a tokens worker under {TOKENS_RSS_TARGET_MB:.0f} MB: at most {peak:.1f} MB, "
        + verdict(peak < TOKENS_RSS_TARGET_MB),
        f"- no growth from the {tokens:,}th to the {2 * tokens:,}th token: "
        f"{growth:+.1f} MB (within {GROWTH_TOLERANCE_MB:.0f} MB counts as none), "
        + verdict(growth <= GROWTH_TOLERANCE_MB),
    ]
    return lines


def part(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The memory part of ``python -m bench``."""
    clients_count, tokens = (1_000, 10_000) if args.quick else (10_000, 100_000)
    figures = measure(clients_count, tokens, workdir, _progress)
    return render(figures, clients_count, tokens)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 clients, 10,000 tokens")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--tokens", type=int, default=100_000)
    args = parser.parse_args(argv)
    clients_count, tokens = (1_000, 10_000) if args.quick else (args.clients, args.tokens)
    with tempfile.TemporaryDirectory(prefix="swarm-oauth-memory-") as tmp:
        figures = measure(clients_count, tokens, Path(tmp), _progress)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print("\n".join([*render(figures, clients_count, tokens), "", f"Run {started}, on:"]))
    print("\n".join(machine.describe()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
