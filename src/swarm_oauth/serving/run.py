"""Run an ASGI app on uvicorn with the guarded protocol, in one or several processes."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, Protocol, runtime_checkable

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from swarm_oauth.logs import stop_writer
from swarm_oauth.serving.guard import GuardedHttpToolsProtocol
from swarm_oauth.serving.limits import HttpLimits, TlsFiles

log = logging.getLogger("swarm_oauth.serving")


class GuardedConfig(uvicorn.Config):
    """uvicorn's configuration plus our limits, which the protocol reads from it.

    With several workers uvicorn pickles this object to each worker process over a
    pipe, the app included: that is how a worker gets its settings without anything in
    its environment or command line.
    """

    def __init__(
        self, app: Any, *, limits: HttpLimits, tls: TlsFiles | None, **options: Any
    ) -> None:
        # Set by ``serve`` before the workers start, and read in each one (see below);
        # first, since uvicorn's own constructor calls ``configure_logging`` already.
        self.write_logs_on_signal = False
        self.supervisor_pid: int | None = None
        super().__init__(
            app,
            http=GuardedHttpToolsProtocol,
            # Nothing here speaks WebSocket; the guard serves an upgrade request over HTTP/1.1.
            ws="none",
            log_config=None,
            access_log=False,
            # Nothing reads X-Forwarded-*; the middleware would cost every request.
            proxy_headers=False,
            server_header=False,
            ssl_certfile=None if tls is None else str(tls.cert_file),
            ssl_keyfile=None if tls is None or tls.key_file is None else str(tls.key_file),
            **options,
        )
        self.limits = limits

    def configure_logging(self) -> None:
        # uvicorn calls this first thing in a worker process, before its server takes
        # over the signals: the one moment to make them write the logs before they kill.
        super().configure_logging()
        if self.write_logs_on_signal:
            write_logs_before_signal_death()
        if self.supervisor_pid is not None:
            end_with_supervisor(self.supervisor_pid)


def write_logs_before_signal_death() -> None:
    """Have SIGTERM and SIGINT write the queued log lines before they end the process.

    uvicorn stops gracefully on either, then raises it again with the handler it found,
    so that the process ends by the signal as a supervisor expects (status 143 in
    Docker). Their default action would end it before the log writer's thread wrote its
    last batch: the shutdown's own lines, and the access lines of the last ~20 ms.
    """
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers; nor does uvicorn then
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _die_after_writing_logs)


# <linux/prctl.h>
PR_SET_PDEATHSIG = 1


def end_with_supervisor(supervisor_pid: int) -> None:
    """Have this worker stop (SIGTERM, so gracefully) when its supervisor dies.

    A supervisor that is told to stop stops its workers; one killed outright (SIGKILL,
    the OOM killer) cannot, and its workers would go on serving the port with the old
    settings, so that a server started again cannot listen on it. Linux only; elsewhere a
    no-op.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        log.warning(
            "a worker cannot ask to end with its supervisor",
            extra={"reason": os.strerror(ctypes.get_errno())},
        )
        return
    if os.getppid() != supervisor_pid:  # it died before the request above
        signal.raise_signal(signal.SIGTERM)


@contextlib.contextmanager
def ending_on_signal() -> Iterator[None]:
    """For a block that holds a worker's main thread before it serves (a wait for its
    store): ``SIGTERM`` or ``SIGINT`` end the process at once, its logs written, rather
    than setting a flag the blocked server would read only afterwards (and a supervisor
    stopping would wait for it); the handlers in place before come back after it."""
    stopping = (signal.SIGTERM, signal.SIGINT)
    previous = {sig: signal.getsignal(sig) for sig in stopping}
    for sig in stopping:
        signal.signal(sig, _die_after_writing_logs)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _die_after_writing_logs(signum: int, frame: FrameType | None) -> None:
    stop_writer()
    signal.signal(signum, signal.SIG_DFL)
    signal.raise_signal(signum)


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    limits: HttpLimits,
    tls: TlsFiles | None = None,
    workers: int = 1,
    factory: bool = False,
    listening: socket.socket | None = None,
) -> None:
    """Serve ``app`` until stopped. With ``factory``, and always with ``workers`` > 1,
    ``app`` is a picklable factory (a callable without arguments that returns the ASGI
    app), called in each worker. ``listening`` is a socket already bound to ``host``:``port``,
    if the caller bound one."""
    config = GuardedConfig(
        app,
        limits=limits,
        tls=tls,
        host=host,
        port=port,
        workers=workers,
        factory=factory or workers > 1,
    )
    # Bound here, before anything starts, so that a port in use is one clear error (uvicorn
    # would log it and exit with its own status).
    if listening is None:
        listening = listening_socket(host, port)
    # uvicorn logs where it listens only for the sockets it binds itself.
    log.info(
        "listening",
        extra={"url": f"{'https' if tls else 'http'}://{_address(host, port)}", "workers": workers},
    )
    if workers > 1:
        # The supervisor ends by returning (its lines written at exit); its workers as
        # one worker does, by the signal.
        config.write_logs_on_signal = True
        config.supervisor_pid = os.getpid()
        supervisor = Supervisor(config, sockets=[listening])
        supervisor.run()
        if any(worker.exitcode == STARTUP_FAILURE for worker in supervisor.processes):
            raise WorkerStartError("a worker could not start; the log says why")
        return
    write_logs_before_signal_death()
    server = uvicorn.Server(config)
    server.run(sockets=[listening])
    if not server.started:
        sys.exit(STARTUP_FAILURE)


@runtime_checkable
class Replaceable(Protocol):
    """An app factory that builds its app differently in a worker started after the
    first ones (in place of one that died, or at ``SIGHUP``): the server already serves."""

    def replacement(self) -> Callable[[], Any]:
        """The factory for such workers."""
        ...


class Supervisor(Multiprocess):
    """uvicorn's supervisor, whose workers started after the first ones get the app
    factory's ``replacement()`` (when it has one)."""

    def init_processes(self) -> None:
        """Start the first workers; every later one is a replacement."""
        super().init_processes()
        # Each worker gets the config pickled when it starts: the first ones already have.
        if isinstance(self.config.app, Replaceable):
            self.config.app = self.config.app.replacement()


class ListenError(Exception):
    """The address cannot be listened on (in use, not this host's, not allowed)."""


class WorkerStartError(Exception):
    """A worker process could not start, so the supervisor stopped them all."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` as uvicorn binds one (address reuse on,
    inherited by the worker processes); ``ListenError`` saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = None
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPv6 may be off
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        if sock is not None:
            sock.close()
        raise ListenError(
            f"cannot listen on {_address(host, port)}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(True)
    return sock


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
