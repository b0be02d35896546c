"""Load generation with ``wrk`` (Debian package ``wrk``) and the Lua script beside this file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import pinned

SCRIPT = Path(__file__).with_name("post.lua")
RESULT_LINE = re.compile(r"^BENCH (.*)$", re.MULTILINE)


class LoadError(RuntimeError):
    """wrk failed, or the server answered nothing but errors."""


@dataclass(frozen=True)
class Load:
    """One wrk run's outcome."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non2xx: int

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return (self.requests - self.non2xx) / self.seconds


def wrk_path() -> str:
    """The wrk binary, or a clear failure naming the package to install."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    return found


def parse(output: str) -> Load:
    """The figures from the script's ``BENCH key=value ...`` line."""
    match = RESULT_LINE.search(output)
    if match is None:
        raise LoadError(f"wrk printed no result line:\n{output[-2000:]}")
    fields = dict(item.split("=", 1) for item in match.group(1).split())
    return Load(
        requests=int(fields["requests"]),
        seconds=int(fields["duration_us"]) / 1e6,
        p50_ms=int(fields["p50_us"]) / 1000,
        p99_ms=int(fields["p99_us"]) / 1000,
        max_ms=int(fields["max_us"]) / 1000,
        socket_errors=int(fields["socket_errors"]),
        non2xx=int(fields["non2xx"]),
    )


def run(
    url: str,
    *,
    connections: int,
    seconds: float,
    body: str,
    authorization: str,
    cores: str | None,
    method: str = "POST",
    auth_file: Path | None = None,
) -> Load:
    """Send ``method`` requests (with ``body``, if any) to ``url`` from ``connections``
    connections for ``seconds``; with ``auth_file`` (Authorization values, one a line)
    successive requests take its values in turn instead of ``authorization``."""
    cmd = [
        wrk_path(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        url,
    ]
    env = {
        **os.environ,
        "BENCH_METHOD": method,
        "BENCH_BODY": body,
        "BENCH_AUTH": authorization,
        "BENCH_AUTH_FILE": str(auth_file or ""),
    }
    done = subprocess.run(
        pinned(cmd, cores), env=env, capture_output=True, text=True, timeout=seconds + 60
    )
    if done.returncode != 0:
        raise LoadError(f"wrk exited {done.returncode}: {done.stderr[-2000:]}")
    load = parse(done.stdout)
    if load.requests == 0 or load.non2xx == load.requests:
        raise LoadError(f"{url}: none of {load.requests} responses was a 2xx")
    return load
