"""What the benchmark ran on, for the report: absolute figures mean nothing without it."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "swarm-oauth",
    "uvicorn",
    "uvloop",
    "httptools",
    "starlette",
    "cryptography",
    "PyJWT",
    "Authlib",
    "joserfc",
    "Flask",
    "Flask-SQLAlchemy",
    "SQLAlchemy",
    "gunicorn",
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``unknown`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def wrk_version() -> str:
    """wrk's first line of ``-v`` output; "wrk (absent)" where it is not installed (the
    benchmarks that do not load a server over HTTP run without it)."""
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return "wrk (absent)"
    return (done.stdout or done.stderr).splitlines()[0].split(" [")[0].strip()


def source_revision() -> str:
    """The checkout's commit, marked when ``src/`` has uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    if not head:
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return head + (" with uncommitted changes in src/" if dirty else "")


def versions() -> str:
    """``name version`` of the packages that shape the figures."""
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (absent)")
    return ", ".join(found)


def describe() -> list[str]:
    """Markdown lines describing this machine and software."""
    return [
        f"- CPU: {cpu_model()}, nproc {os.cpu_count()}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"- swarm-oauth source: git {source_revision()}",
        f"- {wrk_version()}; {versions()}",
    ]
