"""A real HTTP server on 127.0.0.1 that serves one JSON document, for the SDK's fetchers
(JWKS, revocation list): its status and body can change between requests, it answers
``If-None-Match`` with 304 like the token server, and a request can be held."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class DocumentServer:
    """Serves ``document`` at ``url`` with ``status`` (and an ETag from its content when
    ``etags``); while ``gate`` is clear, a request waits for it."""

    def __init__(self, document: Any, path: str = "/document", *, etags: bool = False) -> None:
        self.document = document
        self.status = 200
        self.etags = etags
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        self.answered: list[int] = []  # the status of each answer, in order
        self.if_none_match: list[str | None] = []  # what each request sent
        self.etag: str | None = None  # sent instead of the content's own tag, when set
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.arrived.set()
                server.gate.wait(30)
                server.if_none_match.append(self.headers.get("If-None-Match"))
                status, body = server.status, json.dumps(server.document).encode()
                etag = server.etag or f'"{hashlib.sha256(body).hexdigest()[:16]}"'
                if status == 200 and server.etags and self.headers.get("If-None-Match") == etag:
                    status, body = 304, b""
                server.answered.append(status)  # before the answer: the client may be quick
                self.send_response(status)
                if server.etags:
                    self.send_header("ETag", etag)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def hold(self) -> None:
        """Make the next request wait until ``release``."""
        self.arrived.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.release()
        self.httpd.shutdown()
        self.httpd.server_close()
