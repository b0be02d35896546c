"""``POST /api/token``, as a bare ASGI callable and as a direct endpoint.

This is the hot path, so it skips the framework's request objects and middleware: it
reads the body itself, and the grant logic lives in ``swarm_oauth.tokens``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from starlette.types import Receive, Scope, Send

from swarm_oauth.api.forms import (
    cached_client,
    form_headers,
    form_of,
    load_client,
    reloaded_client,
)
from swarm_oauth.api.metrics import TOKEN_ISSUE_SECONDS, TOKENS
from swarm_oauth.api.observe import LOG_FIELDS
from swarm_oauth.api.responses import (
    NO_STORE,
    json_answer,
    raw_json_answer,
    send_answer,
    send_json,
)
from swarm_oauth.bodies import BodyTooLarge, ClientDisconnected, read_body
from swarm_oauth.cpus import usable_cpus
from swarm_oauth.runtime import Runtime
from swarm_oauth.serving.direct import Answer, Headers, Later, header_length
from swarm_oauth.store import ClientRecord
from swarm_oauth.tokens import (
    IssuedToken,
    NoSigningKey,
    OAuthError,
    TokenRequest,
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
    """The client credentials token endpoint (RFC 6749 §4.4, §5).

    Served two ways with the same checks and answers: ``answer_now`` for the protocol
    (``serving/direct.py``), when nothing has to be waited for, and as an ASGI app for
    everything else (a client not cached yet, a revocation's second to let pass, an RSA
    signature off the event loop, a body over the cap, another method).
    """

    method = "POST"
    max_body_bytes = MAX_BODY_BYTES

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._signing: ThreadPoolExecutor | None = None

    def _signing_threads(self) -> ThreadPoolExecutor:
        # Made when a slow key first signs. One thread per core this process may use:
        # the signatures then run side by side, and the event loop keeps answering.
        if self._signing is None:
            self._signing = ThreadPoolExecutor(usable_cpus(), thread_name_prefix="swarm-oauth-sign")
        return self._signing

    def answer_now(
        self, headers: Headers, body: bytes, query: bytes, fields: dict[str, object]
    ) -> Answer | Later | None:
        """The answer to a ``POST`` with ``headers`` and ``body``, if it can be given
        without waiting; ``None`` otherwise. Adds the access log's fields to ``fields``.
        The query string is ignored, as the ASGI path ignores it (RFC 6749 §4.4.2: the
        parameters are in the body).

        What follows the checks that may decline (the client's authentication, its
        scopes, the signature) is left to a ``Later``, computed with the other answers of
        the event loop's pass (``serving/batch.py``) and as of the ``now`` at which the
        client was found cached and no revocation held it back."""
        runtime = self.runtime
        try:
            request = self._request(headers, body, fields)
            cached, client = cached_client(runtime, request.client_id)
            now = time.time()
            if (
                not cached
                or runtime.revocations.issue_delay(request.client_id, now)
                or runtime.issuer.signs_slowly(now)
            ):
                return None
            return partial(self._issued_or_refused, request, client, now, fields)
        except OAuthError as exc:
            return _refused(exc, fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await send_json(
                send,
                405,
                error_body("invalid_request", "use POST"),
                [(b"allow", b"POST"), *NO_STORE],
            )
            return
        length = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = header_length(value)
        fields = scope.setdefault(LOG_FIELDS, {})
        try:
            body = await read_body(receive, MAX_BODY_BYTES, length)
        except ClientDisconnected:
            return
        except BodyTooLarge:
            answer = _refused(
                OAuthError("invalid_request", f"request body exceeds {MAX_BODY_BYTES} bytes", 413),
                fields,
            )
        else:
            answer = await self._answer(scope["headers"], body, fields)
        await send_answer(send, answer)

    async def _answer(self, headers: Headers, body: bytes, fields: dict[str, object]) -> Answer:
        runtime = self.runtime
        try:
            request = self._request(headers, body, fields)
            client = await load_client(runtime, request.client_id)
            delay = runtime.revocations.issue_delay(request.client_id, time.time())
            if delay:
                # Its tokens were just revoked up to this second: a token issued now
                # would be. uvloop's timers count whole milliseconds and may fire that
                # much early.
                await asyncio.sleep(delay + TIMER_SLACK_SECONDS)
                # And asked again, of the store: a cut-off comes with a removal or after
                # a new secret, which the record loaded before the wait (or the cache,
                # behind the store by a poll) may not know of yet.
                client = await reloaded_client(runtime, request.client_id)
            now = time.time()
            if runtime.issuer.signs_slowly(now):
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(
                    self._signing_threads(), self._issued, request, client, now
                )
            return self._issued(request, client, now)
        except OAuthError as exc:
            return _refused(exc, fields)

    def _request(self, headers: Headers, body: bytes, fields: dict[str, object]) -> TokenRequest:
        content_type, authorization = form_headers(headers)
        request = parse_token_request(form_of(content_type, body), authorization)
        # The id has the registry's grammar (or the request was refused): never a pasted
        # secret or whatever else a caller put in the field reaches the log.
        fields["client_id"] = request.client_id
        return request

    def _issued_or_refused(
        self,
        request: TokenRequest,
        client: ClientRecord | None,
        now: float,
        fields: dict[str, object],
    ) -> Answer:
        try:
            return self._issued(request, client, now)
        except OAuthError as exc:
            return _refused(exc, fields)

    def _issued(self, request: TokenRequest, client: ClientRecord | None, now: float) -> Answer:
        started = time.perf_counter()
        runtime = self.runtime
        try:
            issued = grant(request, client, runtime.issuer, now, runtime.default_audiences)
        except NoSigningKey:
            log.error("no active signing key; run `swarm-oauth keys rotate`")
            raise OAuthError("temporarily_unavailable", "no signing key is active", 503) from None
        TOKEN_ISSUE_SECONDS.observe(time.perf_counter() - started)
        ISSUED.inc()
        return raw_json_answer(200, token_response(issued), NO_STORE)


def _refused(exc: OAuthError, fields: dict[str, object]) -> Answer:
    TOKENS.labels(exc.error).inc()
    fields["error"] = exc.error
    headers = (*NO_STORE, CHALLENGE) if exc.status == 401 else NO_STORE
    return json_answer(exc.status, error_body(exc.error, exc.description), headers)
