"""Run an ASGI app on uvicorn with the guarded protocol, in one or several processes."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

from swarm_oauth.serving.guard import GuardedHttpToolsProtocol
from swarm_oauth.serving.limits import HttpLimits, TlsFiles


class GuardedConfig(uvicorn.Config):
    """uvicorn's configuration plus our limits, which the protocol reads from it.

    With several workers uvicorn pickles this object to each worker process over a
    pipe, the app included: that is how a worker gets its settings without anything in
    its environment or command line.
    """

    def __init__(
        self, app: Any, *, limits: HttpLimits, tls: TlsFiles | None, **options: Any
    ) -> None:
        super().__init__(
            app,
            http=GuardedHttpToolsProtocol,
            # Nothing here speaks WebSocket; an upgrade request is an ordinary request.
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


def serve(
    app: Any,
    *,
    host: str,
    port: int,
    limits: HttpLimits,
    tls: TlsFiles | None = None,
    workers: int = 1,
    factory: bool = False,
) -> None:
    """Serve ``app`` until stopped. With ``factory``, and always with ``workers`` > 1,
    ``app`` is a picklable factory (a callable without arguments that returns the ASGI
    app), called in each worker."""
    config = GuardedConfig(
        app,
        limits=limits,
        tls=tls,
        host=host,
        port=port,
        workers=workers,
        factory=factory or workers > 1,
    )
    if workers > 1:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
