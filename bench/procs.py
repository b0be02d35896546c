"""Server processes for the benchmark: started on a core, waited for, stopped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stat(pid: str) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name; None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_cpu_seconds(pgid: int) -> float:
    """User and system CPU time used so far by the live processes of group ``pgid``
    (a server and the workers it started; Linux ``/proc``)."""
    ticks = 0
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None and int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def group_rss_bytes(pgid: int) -> dict[int, int]:
    """Resident memory of each live process of group ``pgid``, by pid."""
    page = os.sysconf("SC_PAGE_SIZE")
    sizes = {}
    for entry in os.listdir("/proc"):
        fields = _stat(entry) if entry.isdigit() else None
        if fields is not None and int(fields[2]) == pgid:
            sizes[int(entry)] = int(fields[21]) * page
    return sizes


def pinned(cmd: Sequence[str], cores: str | None) -> list[str]:
    """``cmd`` run by ``taskset`` on ``cores`` (e.g. ``"0"``), or as is for None."""
    return ["taskset", "-c", cores, *cmd] if cores is not None else list(cmd)


class Server:
    """A server subprocess in its own process group, its output in ``log_path``, or with
    ``log_path`` None on a pipe (``proc.stdout``) for the caller to read."""

    def __init__(
        self,
        name: str,
        cmd: Sequence[str],
        port: int,
        log_path: Path | None,
        *,
        env: dict[str, str] | None = None,
        cores: str | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.log_path = log_path
        with contextlib.ExitStack() as stack:
            output = (
                subprocess.PIPE if log_path is None else stack.enter_context(log_path.open("ab"))
            )
            self.proc = subprocess.Popen(
                pinned(cmd, cores),
                stdout=output,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                # Its own group, so stopping it also stops the workers it forked.
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """CPU time used so far by the server and its workers."""
        return group_cpu_seconds(self.proc.pid)

    def wait_listening(self, timeout: float = 30.0) -> None:
        """Return once the port accepts connections; fail with the log's tail otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        tail = "" if self.log_path is None else self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"{self.name} did not start listening on {self.port}:\n{tail}")

    def stop(self) -> None:
        """Stop the process group this server leads (and only it)."""
        if self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
