"""Registration: how soon the registrar gives a new service its secret, and what a
full pass over services that are already converged costs. On the real swarm.

    python -m bench.registration                 # one round: 20 at once, a pass over 200
    python -m bench.registration --repeat 3      # three rounds: medians and the noise
    python -m bench.registration --profile       # also py-spy the registrar during passes

Each round starts a real token server (SQLite) and a real ``swarm-oauth registrar``
(Docker events on, default resync), selecting only this run's services
(``swarm-oauth.client=<run id>``), so registrars of other sessions never see them.

1. Registration: ``--burst`` services (replicas 1, ``sleep``) are created at once from as
   many threads. For each, the time from just before its create call to the first moment
   its spec, listed after a Docker service event (or every 0.25 s), mounts the
   registrar's secret; observed after the list returns, so never early. For context, the
   time to its first running task whose spec has the secret (the task's own timestamp).
2. Full pass: ``--converged`` services with replicas 0 (the registrar manages them like
   any other: selection is by label only) are created and left to converge; then
   ``POST /v1/reconcile``, which answers once the pass is over, is timed ``--passes``
   times. Each pass must write nothing: the registrar's own write counters, every
   service's version and spec, and its Docker secrets are compared before and after.

Every object carries ``swarm-oauth.test=<run id>`` and is removed by it at the end of
each round, also after Ctrl-C (a second Ctrl-C during cleanup is ignored).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import httpx
from prometheus_client.parser import text_string_to_metric_families

from bench.procs import Server, free_port
from bench.profile import hottest, parse_collapsed
from bench.swarm import BASE_IMAGE, RUN_ID, create_service, remove_run_objects, wait_for
from bench.tokens import spread

SELECTOR_KEY = "swarm-oauth.client"
TARGET = "oauth_client_secret"  # the registrar's default secret file name
MANAGED_FILTER = "swarm-oauth.managed-by=registrar"
SERVICE_ID_LABEL = "swarm-oauth.service-id"
P50_TARGET_S, PASS_TARGET_S = 2.0, 5.0
ATTACH_WAIT_S, RUNNING_WAIT_S, QUIET_WAIT_S = 300.0, 120.0, 120.0

Progress = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- the servers -----------------------------------------------------------------------


class Rig:
    """A token server and a registrar selecting ``swarm-oauth.client=<selector>``."""

    def __init__(self, workdir: Path, selector: str) -> None:
        self.selector = selector
        self.docker = docker.from_env(max_pool_size=64, timeout=60)
        data = self.data = workdir / f"server-{selector}"
        port = free_port()
        self.server = Server(
            "token server",
            [sys.executable, "-m", "swarm_oauth", "serve", "--data-dir", str(data),
             "--port", str(port)],
            port,
            workdir / f"server-{selector}.log",
        )  # fmt: skip
        self.registrar: Server | None = None
        try:
            _wait_ready(self.server)
            port = free_port()
            self.registrar = Server(
                "registrar",
                [sys.executable, "-m", "swarm_oauth", "registrar", "--port", str(port),
                 "--clients-url", self.server.url, "--token-url", f"{self.server.url}/api/token",
                 "--admin-token-file", str(data / "admin-token"),
                 "--selector", f"{SELECTOR_KEY}={selector}"],
                port,
                workdir / f"registrar-{selector}.log",
            )  # fmt: skip
            _wait_ready(self.registrar)
            # The full pass at start has run once its timestamp is set.
            wait_for(
                lambda: self.metric("swarm_oauth_registrar_last_full_pass_timestamp_seconds"),
                30,
                message="the registrar's first full pass did not finish",
            )
        except BaseException:
            self.stop()
            raise

    @property
    def labels(self) -> dict[str, str]:
        return {SELECTOR_KEY: self.selector}

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of the registrar's ``/metrics``, by name and labels."""
        assert self.registrar is not None
        text = httpx.get(f"{self.registrar.url}/metrics", timeout=10).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): float(s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric(self, name: str) -> float:
        return sum(v for (n, _), v in self.metrics().items() if n == name)

    def writes(self) -> Counter[str]:
        """Writes the registrar counted as done, by kind (Docker and the clients API)."""
        return Counter(
            {
                dict(labels)["kind"]: value
                for (name, labels), value in self.metrics().items()
                if name == "swarm_oauth_registrar_actions_total"
                and dict(labels).get("outcome") == "ok"
            }
        )

    def full_passes_logged(self) -> int:
        assert self.registrar is not None
        return self.registrar.log_path.read_text(errors="replace").count('"msg": "full pass:')

    def services(self) -> list[dict[str, Any]]:
        """This rig's selected services, as the engine lists them (one call)."""
        label = f"{SELECTOR_KEY}={self.selector}"
        return list(self.docker.api.services(filters={"label": label}))

    def create(self, count: int, threads: int, **kwargs: Any) -> dict[str, float]:
        """Create ``count`` selected services from ``threads`` threads; the wall-clock
        time just before each create call, by service name."""
        names = [f"bench-reg-{RUN_ID}-{self.selector[-6:]}-{i:03d}" for i in range(count)]
        started: dict[str, float] = {}

        def one(name: str) -> None:
            started[name] = time.time()
            create_service(self.docker, name, self.labels, **kwargs)

        pool = ThreadPoolExecutor(threads)
        try:
            list(pool.map(one, names))
        finally:  # on Ctrl-C, create no more
            pool.shutdown(wait=True, cancel_futures=True)
        return started

    def stop(self) -> None:
        """Stop the registrar first, so it does not react to the cleanup."""
        if self.registrar is not None:
            self.registrar.stop()
        self.server.stop()


def _wait_ready(server: Server, timeout: float = 30.0) -> None:
    server.wait_listening(timeout)

    def ready() -> bool:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{server.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, timeout, message=f"{server.name} not ready")


@contextlib.contextmanager
def _rig(workdir: Path, selector: str, progress: Progress) -> Iterator[Rig]:
    """A rig, and on the way out (also on Ctrl-C) every object of this run removed."""
    client = docker.from_env(timeout=60)
    try:
        rig = Rig(workdir, selector)
        try:
            yield rig
        finally:
            with _no_interrupt():
                rig.stop()
    finally:
        with _no_interrupt():
            progress("  cleanup: removing this run's services and secrets")
            remove_run_objects(client, RUN_ID, timeout=120)
            client.close()


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Ignore Ctrl-C for the duration (cleanup must finish), in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


# -- 1. registration latency -----------------------------------------------------------


@dataclass
class Burst:
    """Seconds from each create call to the secret in the spec, and to a running task
    with it; services that never got there within the wait are counted, not timed."""

    attached: list[float]
    running: list[float]
    not_attached: int = 0
    not_running: int = 0


def mounts_secret(spec: dict[str, Any]) -> bool:
    """Whether a service or task spec mounts a secret at the registrar's target."""
    container = spec.get("TaskTemplate", spec).get("ContainerSpec", {})
    refs = container.get("Secrets") or ()
    return any((ref.get("File") or {}).get("Name") == TARGET for ref in refs)


def engine_time(stamp: str) -> float:
    """Docker's RFC 3339 timestamp (nanoseconds, ``Z``) as Unix time."""
    match = re.fullmatch(r"(.+?T\d\d:\d\d:\d\d)(?:\.(\d+))?Z", stamp)
    if match is None:
        raise ValueError(f"not a Docker timestamp: {stamp!r}")
    base = datetime.datetime.fromisoformat(match[1]).replace(tzinfo=datetime.UTC)
    return base.timestamp() + float(f"0.{match[2] or 0}")


class _Wakeups:
    """Sets ``event`` on every Docker service event, so a change is looked at at once."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.event = threading.Event()
        self._stream = client.api.events(decode=True, filters={"type": "service"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # closed by close(): the stream just ends
            for _ in self._stream:
                self.event.set()

    def close(self) -> None:
        self._stream.close()
        self._thread.join(5)


def registration(rig: Rig, count: int, progress: Progress) -> Burst:
    """Create ``count`` services at once; time each until its spec mounts the secret."""
    progress(f"  creating {count} services at once (replicas 1)")
    attached: dict[str, float] = {}
    ids: dict[str, str] = {}
    wakeups = _Wakeups(rig.docker)
    try:
        with ThreadPoolExecutor(1) as runner:
            creating = runner.submit(rig.create, count, count)
            deadline = time.monotonic() + ATTACH_WAIT_S
            while time.monotonic() < deadline:
                if creating.done() and len(attached) == count:
                    break
                wakeups.event.wait(0.25)
                wakeups.event.clear()
                services = rig.services()
                seen = time.time()  # after the answer: the secret was there by now
                for service in services:
                    name = service["Spec"]["Name"]
                    ids[name] = service["ID"]
                    if name not in attached and mounts_secret(service["Spec"]):
                        attached[name] = seen
            started = creating.result(60)
    finally:
        wakeups.close()
    latencies = [attached[name] - started[name] for name in attached]
    running = _first_running(rig, [ids[name] for name in attached], started, ids)
    return Burst(latencies, running, count - len(latencies), len(attached) - len(running))


@dataclass
class Rotation:
    """One on-demand rotation of a two-replica service: seconds from the request to the
    new secret mounted (the request's answer), and to the old Docker secret deleted (the
    rolling update done, no task using it)."""

    mounted: float
    deleted: float


def rotation(rig: Rig, progress: Progress) -> Rotation:
    """Register a 2-replica service (start-first), then rotate its secret on demand."""
    import docker.types

    progress("  rotating the secret of a 2-replica service")
    name = f"bench-rot-{RUN_ID}-{rig.selector[-6:]}"
    create_service(
        rig.docker,
        name,
        rig.labels,
        mode=docker.types.ServiceMode("replicated", replicas=2),
        update_config=docker.types.UpdateConfig(order="start-first"),
    )
    old = wait_for(
        lambda: rig.docker.api.secrets(filters={"label": [f"{SERVICE_ID_LABEL}={_id(rig, name)}"]}),
        ATTACH_WAIT_S,
        message="the service got no secret",
    )
    wait_for(lambda: _running(rig, name) == 2, RUNNING_WAIT_S, message="tasks not running")
    assert rig.registrar is not None
    token = (rig.data / "admin-token").read_text().strip()
    started = time.monotonic()
    response = httpx.post(
        f"{rig.registrar.url}/v1/services/{name}/rotate",
        headers={"Authorization": f"Bearer {token}"},
        timeout=300,
    )
    response.raise_for_status()
    mounted = time.monotonic() - started
    wait_for(
        lambda: not rig.docker.api.secrets(filters={"id": old[0]["ID"]}),
        RUNNING_WAIT_S,
        interval=0.1,
        message="the old secret was not deleted",
    )
    return Rotation(mounted, time.monotonic() - started)


def _id(rig: Rig, name: str) -> str:
    return str(rig.docker.api.inspect_service(name)["ID"])


def _running(rig: Rig, name: str) -> int:
    tasks = rig.docker.api.tasks(filters={"service": name, "desired-state": "running"})
    return sum(1 for t in tasks if t["Status"]["State"] == "running")


def _first_running(
    rig: Rig, service_ids: list[str], started: dict[str, float], ids: dict[str, str]
) -> list[float]:
    """Per service, seconds from its create call to its first task running with the
    secret in its spec, by the task's own timestamp (so polling adds no delay)."""
    by_id = {service_id: name for name, service_id in ids.items()}
    found: dict[str, float] = {}
    deadline = time.monotonic() + RUNNING_WAIT_S
    while service_ids and len(found) < len(service_ids) and time.monotonic() < deadline:
        tasks = rig.docker.api.tasks(filters={"service": service_ids})
        for task in tasks:
            status = task.get("Status") or {}
            if status.get("State") != "running" or not mounts_secret(task["Spec"]):
                continue
            at = engine_time(status["Timestamp"])
            service_id = task["ServiceID"]
            found[service_id] = min(at, found.get(service_id, at))
        time.sleep(0.5)
    return [at - started[by_id[service_id]] for service_id, at in found.items()]


# -- 2. a full pass over converged services --------------------------------------------


@dataclass
class FullPass:
    """One forced full pass: how long it took, what it cost and what it changed."""

    seconds: float
    outcomes: dict[str, int]
    writes: dict[str, float]  # registrar-counted writes during the pass, by kind
    changed_services: int  # of ours whose version or spec moved
    changed_secrets: int  # of ours created, deleted or changed
    overlapped: bool  # a periodic pass ran in the same window (it shares the pass lock)
    cpu: dict[str, float]  # CPU seconds spent meanwhile, by process

    @property
    def our_writes(self) -> float:
        """Writes that touched this run's services, secrets or clients. A registrar also
        deletes Docker secrets of any removed service (other sessions' included), so its
        ``delete_secret`` count only shows here through ``changed_secrets``."""
        others = sum(v for kind, v in self.writes.items() if kind != "delete_secret")
        return others + self.changed_services + self.changed_secrets


def _snapshot(rig: Rig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each service's (version, spec) and each of their registrar secrets' version."""
    services = {s["ID"]: (s["Version"]["Index"], s["Spec"]) for s in rig.services()}
    raw = rig.docker.api.secrets(filters={"label": [MANAGED_FILTER]})
    secrets_ = {
        s["ID"]: s["Version"]["Index"]
        for s in raw
        if (s["Spec"].get("Labels") or {}).get(SERVICE_ID_LABEL) in services
    }
    return services, secrets_


def _cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every process in a process group, from /proc."""
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == pgid:  # fields after "(comm)": state ppid pgrp ...
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _cpu(rig: Rig) -> dict[str, float]:
    assert rig.registrar is not None
    groups = {"registrar": rig.registrar.proc.pid, "token server": rig.server.proc.pid}
    with contextlib.suppress(OSError, ValueError, subprocess.CalledProcessError):
        dockerd = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=True)
        groups["dockerd"] = os.getpgid(int(dockerd.stdout.split()[0]))
    return {name: _cpu_seconds(pgid) for name, pgid in groups.items()}


def _converged(rig: Rig, count: int, progress: Progress) -> None:
    """Wait until ``count`` services mount their secret and the registrar is idle."""
    wait_for(
        lambda: sum(mounts_secret(s["Spec"]) for s in rig.services()) >= count,
        ATTACH_WAIT_S,
        message=f"not all {count} services got their secret",
        interval=1.0,
    )
    progress("  converged; waiting for the registrar and the engine to go quiet")
    last: list[float] = []

    def quiet() -> bool:
        # Its own updates come back to it as events; those reconciles must be over,
        # and no rolling update may still be about to bump a service's version.
        last.append(rig.metric("swarm_oauth_registrar_reconciles_total"))
        updating = any(
            (s.get("UpdateStatus") or {}).get("State") == "updating" for s in rig.services()
        )
        return len(last) >= 4 and len(set(last[-4:])) == 1 and not updating

    wait_for(quiet, QUIET_WAIT_S, interval=0.5, message="the registrar did not go quiet")


def full_passes(
    rig: Rig, count: int, passes: int, progress: Progress, profile: Path | None = None
) -> list[FullPass]:
    """Create ``count`` services (replicas 0), let them converge, then time forced passes
    (py-spying the registrar meanwhile if ``profile`` names a file for its samples)."""
    progress(f"  creating {count} services (replicas 0)")
    rig.create(count, 8, mode=docker.types.ServiceMode("replicated", replicas=0))
    _converged(rig, count, progress)
    assert rig.registrar is not None
    results = []
    with _profiling(rig, profile, progress):
        for n in range(1, passes + 1):
            before, writes, logged = _snapshot(rig), rig.writes(), rig.full_passes_logged()
            cpu = _cpu(rig)
            started = time.perf_counter()
            response = httpx.post(f"{rig.registrar.url}/v1/reconcile", timeout=300)
            seconds = time.perf_counter() - started
            cpu = {name: spent - cpu.get(name, 0.0) for name, spent in _cpu(rig).items()}
            response.raise_for_status()
            after = _snapshot(rig)
            moved = set(before[1].items()) ^ set(after[1].items())
            result = FullPass(
                seconds,
                response.json()["outcomes"],
                {k: v for k, v in (rig.writes() - writes).items() if v},
                sum(before[0].get(sid) != state for sid, state in after[0].items()),
                len({sid for sid, _ in moved}),
                rig.full_passes_logged() - logged > 1,
                cpu,
            )
            progress(
                f"  pass {n}/{passes}: {seconds:.2f} s, {result.outcomes}, writes "
                f"{result.writes}, CPU s " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
            )
            results.append(result)
    return results


# -- rounds, figures and the table -----------------------------------------------------


@dataclass
class Round:
    burst: Burst
    passes: list[FullPass]
    services: int
    rotation: Rotation | None = None


@dataclass
class Figures:
    """Every round of the registration benchmark, and the figures drawn from them."""

    rounds: list[Round] = field(default_factory=list)
    load_average: list[tuple[float, float, float]] = field(default_factory=list)

    def per_round(self, figure: Callable[[Round], float | None]) -> list[float]:
        return [v for v in (figure(r) for r in self.rounds) if v is not None]


def _p50(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _max(values: list[float]) -> float | None:
    return max(values) if values else None


def _pass_seconds(r: Round) -> float | None:
    return statistics.median(p.seconds for p in r.passes) if r.passes else None


def _pass_writes(r: Round) -> float:
    return sum(p.our_writes for p in r.passes)


FIGURES: list[tuple[str, Callable[[Round], float | None], str, float | None]] = [
    ("registration p50 (s)", lambda r: _p50(r.burst.attached), "< 2 s", P50_TARGET_S),
    ("registration max (s)", lambda r: _max(r.burst.attached), "", None),
    ("first running task with the secret, p50 (s)", lambda r: _p50(r.burst.running), "", None),
    ("first running task with the secret, max (s)", lambda r: _max(r.burst.running), "", None),
    ("full pass over converged services (s)", _pass_seconds, "< 5 s", PASS_TARGET_S),
    ("writes during the full passes", _pass_writes, "0", None),
    (
        "secret rotation of a 2-replica service: new secret mounted (s)",
        lambda r: r.rotation.mounted if r.rotation else None,
        "",
        None,
    ),
    (
        "secret rotation of a 2-replica service: old secret deleted (s)",
        lambda r: r.rotation.deleted if r.rotation else None,
        "",
        None,
    ),
]


def rows(figures: Figures) -> list[tuple[str, str, str, str]]:
    """``(figure, value, target, ok)``: medians over rounds, ± half the min-max range."""
    table = []
    for label, figure, target, limit in FIGURES:
        values = figures.per_round(figure)
        if not values:
            table.append((label, "n/a", target, "" if not target else "**no**"))
            continue
        value = statistics.median(values)
        text = f"{value:.2f}" if "(s)" in label else f"{value:g}"
        if len(values) > 1 and value:
            text += f" ±{spread(values):.0%}"
        if limit is not None:
            ok = "yes" if value < limit else "**no**"
        else:
            ok = ("yes" if value == 0 else "**no**") if target == "0" else ""
        table.append((label, text, target, ok))
    return table


def render(figures: Figures) -> list[str]:
    """The registration section of the benchmark report, in Markdown."""
    rounds = figures.rounds
    if not rounds:
        return ["## Registration", "", "No round completed."]
    burst = len(rounds[0].burst.attached) + rounds[0].burst.not_attached
    lines = [
        "## Registration",
        "",
        f"A real token server (SQLite) and `swarm-oauth registrar` (events on, resync "
        f"60 s), {len(rounds)} round(s); figures are medians over rounds, ± is half the "
        f"min-max range. Registration: {burst} services (replicas 1) created at once, from "
        "each create call to its spec mounting the secret, seen by listing the services on "
        "each Docker service event. Full pass: `POST /v1/reconcile` over "
        f"{rounds[0].services} converged services with replicas 0, checked to write "
        "nothing (the registrar's write counters, every service's version and spec, their "
        "Docker secrets). Rotation: `POST /v1/services/{name}/rotate` on a selected service "
        "with 2 replicas and `order: start-first`, from the request to its answer (the new "
        "secret mounted) and to the old Docker secret deleted (the rolling update done).",
        "",
        "| figure | value | target | ok |",
        "|---|---:|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(figures)),
        "",
    ]
    for n, r in enumerate(rounds, 1):
        lines.append(f"- round {n}: " + "; ".join(_round_notes(r)))
    loads = ", ".join(f"{a:.2f}" for a, _, _ in figures.load_average)
    lines += ["", f"1-minute load average at each round's start and end: {loads}."]
    return lines


def _round_notes(r: Round) -> list[str]:
    b = r.burst
    notes = [
        f"registration p50 {_p50(b.attached) or 0:.2f} s, max {_max(b.attached) or 0:.2f} s",
        f"first running task p50 {_p50(b.running) or 0:.2f} s, max {_max(b.running) or 0:.2f} s",
    ]
    if b.not_attached:
        notes.append(f"**{b.not_attached} never got the secret**")
    if b.not_running:
        notes.append(f"{b.not_running} had no running task with it in time")
    if r.passes:
        seconds = ", ".join(
            f"{p.seconds:.2f}" + (" (a periodic pass overlapped)" if p.overlapped else "")
            for p in r.passes
        )
        cpu = {
            name: statistics.median(p.cpu.get(name, 0) for p in r.passes)
            for name in r.passes[0].cpu
        }
        notes.append(f"full passes {seconds} s, outcomes {r.passes[0].outcomes}")
        notes.append("CPU s per pass: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()))
        foreign = sum(p.writes.get("delete_secret", 0) for p in r.passes) - sum(
            p.changed_secrets for p in r.passes
        )
        if foreign > 0:
            notes.append(f"also deleted {foreign:g} secret(s) of other sessions' removed services")
    return notes


def part(args: argparse.Namespace, workdir: Path) -> list[str]:
    """The registration section for ``python -m bench`` (``--quick``: 50 services, one
    pass; ``--repeat``: rounds)."""
    figures = measure(
        workdir,
        repeat=args.repeat,
        converged=50 if args.quick else 200,
        passes=1 if args.quick else 3,
    )
    return render(figures)


def measure(
    workdir: Path,
    progress: Progress = _stderr,
    *,
    repeat: int = 1,
    burst: int = 20,
    converged: int = 200,
    passes: int = 3,
    profile: Path | None = None,
) -> Figures:
    """Run ``repeat`` rounds; each part of a round has its own rig and cleanup."""
    figures = Figures()
    for n in range(1, repeat + 1):
        figures.load_average.append(os.getloadavg())
        progress(f"round {n}/{repeat}: registration of {burst} services at once")
        with _rig(workdir, f"{RUN_ID}-r{n}a", progress) as rig:
            result = registration(rig, burst, progress)
        progress(f"round {n}/{repeat}: full pass over {converged} converged services")
        with _rig(workdir, f"{RUN_ID}-r{n}b", progress) as rig:
            out = profile / f"round{n}.txt" if profile else None
            done = full_passes(rig, converged, passes, progress, out)
        progress(f"round {n}/{repeat}: an on-demand secret rotation")
        with _rig(workdir, f"{RUN_ID}-r{n}c", progress) as rig:
            rotated = rotation(rig, progress)
        figures.rounds.append(Round(result, done, converged, rotated))
        figures.load_average.append(os.getloadavg())
    return figures


@contextlib.contextmanager
def _profiling(rig: Rig, out: Path | None, progress: Progress) -> Iterator[None]:
    """py-spy the registrar while the block runs (idle threads included: a pass mostly
    waits on Docker and the clients API), then print where its reconcile threads were."""
    if out is None or rig.registrar is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [spy, "record", "--pid", str(rig.registrar.proc.pid), "--idle",
         "--rate", "250", "--format", "raw", "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        if out.exists():
            for line in profile_summary(out.read_text()):
                progress(line)


def profile_summary(collapsed: str, top: int = 12) -> list[str]:
    """Where the reconcile threads' samples went: the innermost registrar frame, and the
    innermost frame overall."""
    stacks = [(frames, count) for frames, count in parse_collapsed(collapsed) if _in_pass(frames)]
    ours: Counter[str] = Counter()
    for frames, count in stacks:
        mine = [f for f in frames if "swarm_oauth/registrar/" in f]
        ours[mine[-1] if mine else "(none)"] += count
    total = sum(ours.values()) or 1
    lines = [f"profile: {total} samples of the reconcile threads; innermost registrar frame:"]
    lines += [f"  {count / total:5.1%}  {frame}" for frame, count in ours.most_common(top)]
    lines.append("innermost frame:")
    lines += [f"  {share:5.1%}  {frame}" for frame, share in hottest(stacks, top)]
    return lines


def _in_pass(frames: list[str]) -> bool:
    return any(
        name in frame and "registrar/reconcile.py" in frame
        for frame in frames
        for name in ("full_pass", "_reconcile_one", "_retire")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.registration", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeat", type=int, default=1, help="rounds (default 1)")
    parser.add_argument("--burst", type=int, default=20, help="services created at once")
    parser.add_argument("--converged", type=int, default=200, help="services in the full pass")
    parser.add_argument("--passes", type=int, default=3, help="forced passes per round")
    parser.add_argument("--profile", action="store_true", help="py-spy the registrar's passes")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    args = parser.parse_args(argv)
    with contextlib.closing(docker.from_env()) as client:
        if not client.images.list(name=BASE_IMAGE):
            parser.error(f"image {BASE_IMAGE} is missing; build it with .ci/base-image.sh")
    workdir = Path(tempfile.mkdtemp(prefix="swarm-oauth-bench-reg-"))
    try:
        figures = measure(
            workdir,
            repeat=args.repeat,
            burst=args.burst,
            converged=args.converged,
            passes=args.passes,
            profile=workdir / "profile" if args.profile else None,
        )
    finally:
        if args.keep or args.profile:
            _stderr(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(render(figures)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
