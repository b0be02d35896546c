"""The ``swarm-oauth`` command run as a user runs it: a subprocess, in a directory of the
test's choosing, through a pipe or a terminal."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """``swarm-oauth ARGS`` with its output captured through pipes."""
    return subprocess.run(
        [sys.executable, "-m", "swarm_oauth", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def run_cli_on_terminal(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> tuple[int, str]:
    """``swarm-oauth ARGS`` with standard output on a pseudo-terminal, as a person sees
    it; the exit code and what it printed there."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "swarm_oauth", *args],
            stdout=terminal,
            stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            cwd=cwd,
        )
        os.close(terminal)
        terminal = -1
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the command closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = proc.wait(timeout)
    finally:
        if terminal >= 0:
            os.close(terminal)
        os.close(controller)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")
