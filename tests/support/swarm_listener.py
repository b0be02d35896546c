"""dockerflow's swarm-listener, the real program, run against the test swarm.

Its image is built once per machine from the vendored source (.ci/swarm-listener-image.sh,
deploy/swarm-listener/). Each swarm-listener runs as a plain container with the engine's
socket, on a bridge network of this session. In a container, the port it hard-codes
(8080) is its own; on the host it would clash with whatever else holds 8080.

Its notifications reach the registrar through a ``NotifyRecorder`` on that network's
gateway: a pass-through proxy that forwards each request as it came and records what
swarm-listener sent and what it got back. While no registrar is set, the recorder drops
each request unanswered, as a stopped registrar would, and swarm-listener sees an error.
Everything is labelled like every other test object and removed by that label.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import docker
import httpx
import pytest
from docker.errors import DockerException, NotFound
from docker.models.containers import Container
from docker.models.networks import Network

from tests.support.requirements import unavailable
from tests.support.swarm import unique_name, wait_for, with_test_label

IMAGE_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "swarm-listener-image.sh"
# It listens here, hard-coded (serve.go).
API_PORT = 8080
# Where the registrar takes swarm-listener's notifications: the contract the stack file's
# URLs rely on, so spelled out here rather than imported.
NOTIFY_PATH = "/v1/swarm-listener/notify-"
# Log lines of a notification that did not get its 200 (a retry to come, or a give-up).
FAILURE_MARKERS = ("Retrying ", "ERROR")
# Request headers that belong to one hop, not to the request the recorder passes on.
_HOP_HEADERS = {"host", "connection", "keep-alive", "accept-encoding", "transfer-encoding"}


@dataclass(frozen=True)
class Notification:
    """One request swarm-listener sent, and the status it got (None: dropped unanswered)."""

    method: str
    path: str
    query: dict[str, list[str]]
    status: int | None

    @property
    def kind(self) -> str:
        """``create`` or ``remove``."""
        return self.path.rsplit("-", 1)[-1]

    @property
    def service(self) -> str:
        """The serviceName swarm-listener sent (the last one, after any in the URL)."""
        return self.query.get("serviceName", [""])[-1]


class _Handler(BaseHTTPRequestHandler):
    server: _RecordingServer

    def do_GET(self) -> None:
        self.server.recorder.relay(self)

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the recorder keeps what matters."""


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: NotifyRecorder) -> None:
        super().__init__(address, _Handler)
        self.recorder = recorder


class NotifyRecorder:
    """A pass-through HTTP proxy between swarm-listener and the registrar that records
    every notification; ``upstream`` is the registrar's root URL, or None for none."""

    def __init__(self, host: str) -> None:
        self.upstream: str | None = None
        self._seen: list[Notification] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=120)
        self._server = _RecordingServer((host, 0), self)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The root URL swarm-listener is given instead of the registrar's."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def notify_url(self, kind: str, **query: str) -> str:
        """The URL of the registrar's ``notify-<kind>`` route through this recorder, with
        ``query`` (e.g. a token) in it as an operator would configure it."""
        url = f"{self.url}{NOTIFY_PATH}{kind}"
        return f"{url}?{urlencode(query)}" if query else url

    def notifications(
        self, service: str | None = None, kind: str | None = None
    ) -> list[Notification]:
        """What was recorded so far, oldest first; only for ``service``/``kind`` if given."""
        with self._lock:
            seen = list(self._seen)
        return [
            n
            for n in seen
            if (service is None or n.service == service) and (kind is None or n.kind == kind)
        ]

    def relay(self, handler: BaseHTTPRequestHandler) -> None:
        """Pass one request on and its answer back; record both."""
        upstream = self.upstream
        response = None
        if upstream is not None:
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_HEADERS}
            try:
                response = self._http.request(
                    handler.command, upstream + handler.path, headers=headers
                )
            except httpx.TransportError:
                response = None
        split = urlsplit(handler.path)
        notification = Notification(
            handler.command,
            split.path,
            parse_qs(split.query, keep_blank_values=True),
            None if response is None else response.status_code,
        )
        with self._lock:
            self._seen.append(notification)
        if response is None:
            # Nothing written: swarm-listener sees the connection close, as with no server.
            handler.close_connection = True
            return
        # swarm-listener hangs up on a notification that a newer one for the same
        # service cancels; the registrar's answer is recorded all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            handler.send_response(response.status_code)
            handler.send_header("Content-Type", response.headers.get("content-type", "text/plain"))
            handler.send_header("Content-Length", str(len(response.content)))
            handler.end_headers()
            handler.wfile.write(response.content)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._http.close()


@dataclass
class SwarmListener:
    """A running swarm-listener container."""

    container: Container

    def log(self) -> str:
        """Everything it logged so far."""
        try:
            return self.container.logs().decode(errors="replace")
        except DockerException as exc:
            return f"(log unreadable: {exc})"

    def failures(self) -> list[str]:
        """Its log lines about a notification that did not get its 200."""
        return [line for line in self.log().splitlines() if any(m in line for m in FAILURE_MARKERS)]


class SpecWrites:
    """Counts, from the engine's live event stream, how often each service's spec is
    written while it is open (a context manager).

    The engine answers a query for past events from a short buffer that other sessions'
    containers fill, so the stream is followed as it happens. Docker also reports a
    rolling update's progress as service ``update`` events; those carry ``updatestate.*``
    attributes and are not spec writes.
    """

    def __init__(self, client: docker.DockerClient) -> None:
        # Subscribed once this returns: the engine has answered the request.
        self._stream = client.events(filters={"type": "service", "event": "update"}, decode=True)
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()

    def _follow(self) -> None:
        for event in self._stream:
            actor = event.get("Actor") or {}
            if not any(key.startswith("updatestate.") for key in actor.get("Attributes") or {}):
                with self._lock:
                    self._counts[actor.get("ID", "")] += 1

    def of(self, service_ids: Collection[str]) -> dict[str, int]:
        """Spec writes so far of each of ``service_ids`` that was written at all."""
        with self._lock:
            return {sid: n for sid, n in self._counts.items() if sid in service_ids}

    def __enter__(self) -> SpecWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self._thread.join(10)


@pytest.fixture(scope="session")
def swarm_listener_image(docker_client: docker.DockerClient, base_image: str) -> str:
    """The swarm-listener image, built with .ci/swarm-listener-image.sh unless present."""
    result = subprocess.run(
        ["bash", str(IMAGE_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "BASE_IMAGE": base_image},
        check=False,
    )
    if result.returncode != 0:
        if shutil.which("go") is None:
            unavailable(
                "the swarm-listener image is missing and Go is not installed "
                f"(.ci/packages.sh installs it):\n{result.stderr}"
            )
        pytest.fail(f"{IMAGE_SCRIPT} failed:\n{result.stderr}")
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def listener_network(docker_client: docker.DockerClient) -> Network:
    """A bridge network of this session for swarm-listener containers; its gateway is the
    host's address on it. Removed at the end of the session with the other test objects."""
    return docker_client.networks.create(
        unique_name("dfsl"), driver="bridge", labels=with_test_label()
    )


def _gateway(network: Network) -> str:
    network.reload()
    return str(network.attrs["IPAM"]["Config"][0]["Gateway"])


@pytest.fixture
def notify_recorder(listener_network: Network) -> Iterator[NotifyRecorder]:
    """A recorder on the host's address on ``listener_network``, for one test."""
    recorder = NotifyRecorder(_gateway(listener_network))
    yield recorder
    recorder.close()


@pytest.fixture
def start_swarm_listener(
    docker_client: docker.DockerClient,
    swarm_listener_image: str,
    listener_network: Network,
    notify_recorder: NotifyRecorder,
) -> Iterator[Callable[..., SwarmListener]]:
    """Start swarm-listeners that notify through ``notify_recorder``; removed after the test.

    ``start(label_key, **env)``: it watches ``label_key`` and retries a failed
    notification every second up to 60 times; ``env`` overrides any of its variables
    (``DF_NOTIFY_*_SERVICE_METHOD``, ``DF_RETRY_INTERVAL``, the URLs, ...). Returns once its
    API answers, by which time it follows the engine's service events.
    """
    started: list[SwarmListener] = []

    def start(label_key: str, **env: str) -> SwarmListener:
        environment = {
            "DF_NOTIFY_LABEL": label_key,
            "DF_NOTIFY_CREATE_SERVICE_URL": notify_recorder.notify_url("create"),
            "DF_NOTIFY_REMOVE_SERVICE_URL": notify_recorder.notify_url("remove"),
            "DF_RETRY": "60",
            "DF_RETRY_INTERVAL": "1",
            **env,
        }
        container = docker_client.containers.run(
            swarm_listener_image,
            detach=True,
            name=unique_name("dfsl"),
            environment=environment,
            labels=with_test_label(),
            network=listener_network.name,
            volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "rw"}},
            init=True,
        )
        listener = SwarmListener(container)
        started.append(listener)

        def ping() -> bool:
            container.reload()
            assert container.status in ("created", "running"), f"it exited:\n{listener.log()}"
            address = container.attrs["NetworkSettings"]["Networks"][listener_network.name]
            url = f"http://{address['IPAddress']}:{API_PORT}/v1/docker-flow-swarm-listener/ping"
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ping, 30, 0.1, lambda: f"swarm-listener never answered:\n{listener.log()}")
        return listener

    yield start
    for listener in started:
        with contextlib.suppress(NotFound):
            listener.container.remove(force=True)
