"""ASGI middleware that lets only requests with a valid access token through.

Pure ASGI, so it needs no web framework and wraps any ASGI app; with Starlette or
FastAPI use ``app.add_middleware(BearerTokenMiddleware, verifier=...)``. The verified
claims go into ``scope["state"]``, which Starlette exposes as ``request.state``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from swarm_oauth.sdk.bearer import Rejection, authenticate
from swarm_oauth.sdk.scopes import required_scopes
from swarm_oauth.sdk.verifier import Verifier

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# RFC 6455 §7.4.1: the close code for "policy violation".
WEBSOCKET_POLICY_VIOLATION = 1008
_GUARDED = frozenset({"http", "websocket"})


class BearerTokenMiddleware:
    """Requires a valid bearer token (with ``scopes``) on every HTTP and WebSocket request.

    Paths in ``exempt_paths`` (exact matches, e.g. ``/healthz``) pass without a token.
    Refusals follow RFC 6750 §3: 401 ``invalid_token``, 403 ``insufficient_scope``,
    400 ``invalid_request``; 503 when the issuer's keys cannot be had, 500 when the
    verifier's issuer is misconfigured. A WebSocket
    handshake without a valid token is closed with code 1008 before it is accepted.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: Verifier,
        *,
        scopes: str | Iterable[str] = (),
        exempt_paths: Iterable[str] = (),
        state_key: str = "token_claims",
        realm: str | None = None,
    ) -> None:
        """Wrap ``app``; claims are stored under ``state_key`` in ``scope["state"]``."""
        self.app = app
        self.verifier = verifier
        self.scopes = required_scopes(scopes)
        self.exempt_paths = frozenset(exempt_paths)
        self.state_key = state_key
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Verify the request's token, then call the app or refuse the request."""
        if scope["type"] not in _GUARDED or (
            self.exempt_paths and scope["path"] in self.exempt_paths
        ):
            await self.app(scope, receive, send)
            return
        # The fast path, for a token the verifier remembers sent the usual way: anything
        # else (another spelling, a new token, a refusal) takes the general one below.
        # A loop, not a comprehension: this runs on every request, and 3.11 gives a
        # comprehension a frame of its own.
        authorization, count = b"", 0
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization, count = value, count + 1
        claims = self.verifier.recall(authorization, self.scopes) if count == 1 else None
        if claims is None:
            values = [
                value.decode("latin-1")
                for name, value in scope["headers"]
                if name == b"authorization"
            ]
            outcome = await authenticate(self.verifier, values, self.scopes, self.realm)
            if isinstance(outcome, Rejection):
                await _refuse(scope, send, outcome)
                return
            claims = outcome
        scope.setdefault("state", {})[self.state_key] = claims
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, rejection: Rejection) -> None:
    if scope["type"] == "websocket":
        # A close before accept makes the server refuse the handshake (HTTP 403).
        reason = rejection.description.encode()[:120].decode(errors="ignore")
        await send(
            {"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION, "reason": reason}
        )
        return
    body = rejection.body()
    headers = [
        (b"content-length", str(len(body)).encode()),
        *(
            (name.lower().encode(), value.encode("latin-1"))
            for name, value in rejection.response_headers().items()
        ),
    ]
    await send({"type": "http.response.start", "status": rejection.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})
