"""A unix socket that relays to the Docker Engine's, so a test can take Docker away from
a real process (and give it back) without touching the engine other tests use."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"


class SocketRelay:
    """Listens at ``path`` and pipes every connection to ``target``; ``cut`` closes the
    listener and every connection, as an engine that went away would."""

    def __init__(self, path: Path, target: str = DOCKER_SOCKET) -> None:
        self.path = path
        self.target = target
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()

    @property
    def url(self) -> str:
        """What ``DOCKER_HOST`` is set to for a process to go through the relay."""
        return f"unix://{self.path}"

    def start(self) -> None:
        """Listen (again)."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and break the open ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self.path.unlink(missing_ok=True)
        with self._lock:
            broken, self._open = self._open, set()
        for sock in broken:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                caller, _ = listener.accept()
            except OSError:
                return  # cut
            engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            engine.connect(self.target)
            with self._lock:
                self._open |= {caller, engine}
            for source, sink in ((caller, engine), (engine, caller)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
