"""``POST /api/token`` as a bare ASGI callable.

This is the hot path, so it skips the framework's request objects and middleware: it
reads the body itself, and the grant logic lives in ``swarm_oauth.tokens``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from starlette.types import Receive, Scope, Send

from swarm_oauth.api.bodies import BodyTooLarge, ClientDisconnected, read_body
from swarm_oauth.api.forms import form_of, load_client
from swarm_oauth.api.metrics import TOKEN_ISSUE_SECONDS, TOKENS
from swarm_oauth.api.observe import log_field
from swarm_oauth.api.responses import NO_STORE, send_json, send_raw_json
from swarm_oauth.cpus import usable_cpus
from swarm_oauth.runtime import Runtime
from swarm_oauth.tokens import (
    IssuedToken,
    NoSigningKey,
    OAuthError,
    grant,
    parse_token_request,
)
from swarm_oauth.web import error_body

log = logging.getLogger("swarm_oauth.tokens")

MAX_BODY_BYTES = 8192
TIMER_SLACK_SECONDS = 0.005
CHALLENGE = (b"www-authenticate", b'Basic realm="swarm-oauth", charset="UTF-8"')


ISSUED = TOKENS.labels("issued")


def token_response(issued: IssuedToken) -> bytes:
    """The RFC 6749 §5.1 body. Formatted rather than ``json.dumps``-ed, as nothing in it
    needs escaping: the token is base64url and dots, scopes exclude quote and backslash
    (RFC 6749 §3.3). ``scope`` is left out when empty (a scope value is 1*scope-token)."""
    scope = f',"scope":"{issued.scope}"' if issued.scope else ""
    return (
        f'{{"access_token":"{issued.access_token}","token_type":"Bearer",'
        f'"expires_in":{issued.expires_in}{scope}}}'
    ).encode()


class TokenEndpoint:
    """The client credentials token endpoint (RFC 6749 §4.4, §5)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._signing: ThreadPoolExecutor | None = None

    def _signing_threads(self) -> ThreadPoolExecutor:
        # Made when a slow key first signs. One thread per core this process may use:
        # the signatures then run side by side, and the event loop keeps answering.
        if self._signing is None:
            self._signing = ThreadPoolExecutor(usable_cpus(), thread_name_prefix="swarm-oauth-sign")
        return self._signing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_json(
                send,
                405,
                error_body("invalid_request", "use POST"),
                [(b"allow", b"POST"), *NO_STORE],
            )
            return
        content_type = authorization = None
        declared_length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                declared_length = int(value)
        try:
            body = await read_body(receive, MAX_BODY_BYTES, declared_length)
            response = await self._respond(scope, content_type, authorization, body)
        except ClientDisconnected:
            return
        except BodyTooLarge:
            TOKENS.labels("invalid_request").inc()
            log_field(scope, "error", "invalid_request")
            await send_json(
                send,
                413,
                error_body("invalid_request", f"request body exceeds {MAX_BODY_BYTES} bytes"),
                NO_STORE,
            )
            return
        except OAuthError as exc:
            TOKENS.labels(exc.error).inc()
            log_field(scope, "error", exc.error)
            headers = (*NO_STORE, CHALLENGE) if exc.status == 401 else NO_STORE
            await send_json(send, exc.status, error_body(exc.error, exc.description), headers)
            return
        ISSUED.inc()
        await send_raw_json(send, 200, response, NO_STORE)

    async def _respond(
        self, scope: Scope, content_type: str | None, authorization: str | None, body: bytes
    ) -> bytes:
        request = parse_token_request(form_of(content_type, body), authorization)
        # The id has the registry's grammar (or the request was refused): never a pasted
        # secret or whatever else a caller put in the field reaches the log.
        log_field(scope, "client_id", request.client_id)
        runtime = self.runtime
        client = await load_client(runtime, request.client_id)
        delay = runtime.revocations.issue_delay(request.client_id, time.time())
        if delay:
            # Its tokens were just revoked up to this second: a token issued now would be.
            # uvloop's timers count whole milliseconds and may fire that much early.
            await asyncio.sleep(delay + TIMER_SLACK_SECONDS)
        started = time.perf_counter()
        now = time.time()
        arguments = (request, client, runtime.issuer, now, runtime.default_audiences)
        try:
            if runtime.issuer.signs_slowly(now):
                loop = asyncio.get_running_loop()
                issued = await loop.run_in_executor(self._signing_threads(), grant, *arguments)
            else:
                issued = grant(*arguments)
        except NoSigningKey:
            log.error("no active signing key; run `swarm-oauth keys rotate`")
            raise OAuthError("temporarily_unavailable", "no signing key is active", 503) from None
        TOKEN_ISSUE_SECONDS.observe(time.perf_counter() - started)
        return token_response(issued)
