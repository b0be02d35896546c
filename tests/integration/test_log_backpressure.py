"""A token server whose stderr nobody reads (a stuck log driver, a full pipe) keeps issuing
tokens: its log lines wait on a queue, not on the event loop. A real server process with
its stderr on a pipe of one page that the test leaves unread."""

from __future__ import annotations

import array
import fcntl
import json
import os
import subprocess
import sys
import termios
import threading

import httpx

from tests.support.server import ServerProcess

PIPE_BYTES = 4096
# Each access line is about 250 bytes: many times what the pipe holds.
REQUESTS = 300


def unread_bytes(fd: int) -> int:
    """What a pipe holds that nobody has read yet."""
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def test_a_log_consumer_that_reads_nothing_blocks_no_token_request(tmp_path):
    server = ServerProcess(data_dir=tmp_path / "data")
    server.data_dir.mkdir()
    server.proc = subprocess.Popen(
        [sys.executable, "-m", "swarm_oauth", "serve", "--host", server.host,
         "--port", str(server.port), "--data-dir", str(server.data_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "SWARM_OAUTH_LOG_LEVEL": "info"},
    )  # fmt: skip
    assert server.proc.stderr is not None
    fd = server.proc.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    try:
        server.wait_ready()
        client = server.add_client("svc")
        form = {
            "grant_type": "client_credentials",
            "client_id": "svc",
            "client_secret": client["client_secret"],
        }
        with httpx.Client(base_url=server.url, timeout=10) as http:
            statuses = [http.post("/api/token", data=form).status_code for _ in range(REQUESTS)]
        assert statuses == [200] * REQUESTS
        # The log lines of those requests did not fit: the writer is stuck on a full pipe.
        assert unread_bytes(fd) > PIPE_BYTES // 2

        # Once someone reads, the lines come, the access lines of the tokens among them.
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(server.proc.stderr.read()))
        reader.start()
        server.stop()
        reader.join(30)
    finally:
        server.stop()
    lines = [json.loads(line) for line in b"".join(received).splitlines()]
    tokens = [
        line
        for line in lines
        if line.get("logger") == "swarm_oauth.access" and line.get("route") == "/api/token"
    ]
    assert tokens and all(line["status"] == 200 for line in tokens)
