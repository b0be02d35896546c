"""Token introspection (RFC 7662), revocation (RFC 7009), and the revocation list that
verifiers outside the server poll.

Introspection and revocation take a form, authenticated with the caller's own client
credentials as at the token endpoint (a resource server is a client too); the checks and
rules are ``swarm_oauth.tokens``'.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api.forms import authenticated_client, form_headers, form_of
from swarm_oauth.bodies import BodyTooLarge, ClientDisconnected, declared_length, read_body
from swarm_oauth.runtime import Runtime
from swarm_oauth.tokens import InvalidToken, OAuthError, RevocationList
from swarm_oauth.tokens.revocation import revoke_own_token
from swarm_oauth.web import ApiError

MAX_BODY_BYTES = 8192
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
INACTIVE = {"active": False}
# RFC 7662 §2.2: the members that describe an active token, as the token has them.
INTROSPECTED_CLAIMS = ("client_id", "sub", "scope", "aud", "iss", "exp", "iat", "jti")
# The parameters of RFC 7662 §2.1 and RFC 7009 §2.1 with client authentication: none may
# be repeated; others are ignored (RFC 6749 §3.2).
_PARAMETERS = ("client_id", "client_secret", "token", "token_type_hint")

# RFC 9110 §8.8.3: entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE; If-None-Match is a list of
# them, where empty elements are allowed (§5.6.1).
_ENTITY_TAG = re.compile(r'(?:W/)?("[\x21\x23-\x7e\x80-\xff]*")')
_ENTITY_TAGS = re.compile(
    rf"[ \t,]*{_ENTITY_TAG.pattern}(?:[ \t]*,[ \t,]*{_ENTITY_TAG.pattern})*[ \t,]*"
)


def _names(if_none_match: str, etag: str) -> bool:
    """Whether an ``If-None-Match`` value names ``etag``: ``*``, or a list of entity tags
    one of which equals it by the weak comparison (RFC 9110 §13.1.2, §8.8.3.2). A value
    that is not such a list names nothing, so the list is sent whole."""
    if if_none_match.strip() == "*":
        return True
    if _ENTITY_TAGS.fullmatch(if_none_match) is None:
        return False
    return etag in _ENTITY_TAG.findall(if_none_match)


async def _form(request: Request) -> tuple[dict[str, list[str]], str | None]:
    """The form (it may carry client credentials) and the ``Authorization`` header."""
    declared = declared_length(request.headers.get("content-length"))
    try:
        body = await read_body(request.receive, MAX_BODY_BYTES, declared)
    except BodyTooLarge:
        raise OAuthError(
            "invalid_request", f"request body exceeds {MAX_BODY_BYTES} bytes", 413
        ) from None
    except ClientDisconnected:
        raise ApiError(400, "the request body did not arrive") from None
    content_type, authorization = form_headers(request.scope["headers"])
    form = form_of(content_type, body)
    repeated = sorted(name for name in _PARAMETERS if len(form.get(name, ())) > 1)
    if repeated:
        raise OAuthError("invalid_request", f"parameter {repeated[0]!r} is repeated")
    return form, authorization


def _token(form: dict[str, list[str]]) -> str:
    """The ``token`` parameter; asked for once the caller has authenticated, so that a
    caller who has not learns nothing but that (RFC 7662 §2.1)."""
    token = form.get("token")
    if not token or not token[0]:
        raise OAuthError("invalid_request", "missing token")
    return token[0]


def introspection_routes(runtime: Runtime) -> list[Route]:
    """``/api/introspect``, ``/api/revoke`` and ``/api/revocations``."""
    rendered: tuple[RevocationList, bytes, str] | None = None

    async def introspect(request: Request) -> Response:
        """RFC 7662: whether a token is active, and its claims if it is."""
        form, authorization = await _form(request)
        await authenticated_client(runtime, form, authorization)
        token = _token(form)
        try:
            verified = runtime.verifier.check(token, time.time(), exp_leeway=0)
        except InvalidToken:
            return JSONResponse(INACTIVE, headers=NO_STORE)
        answer: dict[str, Any] = {"active": True, "token_type": "Bearer"}
        answer.update(
            (name, verified.claims[name]) for name in INTROSPECTED_CLAIMS if name in verified.claims
        )
        return JSONResponse(answer, headers=NO_STORE)

    async def revoke(request: Request) -> Response:
        """RFC 7009: revoke one of the caller's own tokens."""
        form, authorization = await _form(request)
        client = await authenticated_client(runtime, form, authorization)
        token = _token(form)
        try:
            verified = runtime.verifier.check(token, time.time())
        except InvalidToken:
            # RFC 7009 §2.2: an invalid, expired or already revoked token is no error.
            return Response(status_code=200, headers=NO_STORE)
        record = await run_in_threadpool(revoke_own_token, runtime.store, verified, client)
        runtime.note_revocation(record)
        return Response(status_code=200, headers=NO_STORE)

    async def revocations(request: Request) -> Response:
        """The revocations in force, for verifiers that check them offline."""
        nonlocal rendered
        if not runtime.watcher.fresh():
            raise ApiError(503, "the store cannot be reached; the list may be incomplete")
        current = runtime.revocations
        if rendered is None or rendered[0] is not current:
            body = json.dumps(current.document(), separators=(",", ":")).encode()
            # From the content, so that every replica gives one list the same tag.
            rendered = (current, body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')
        _, body, etag = rendered
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if _names(request.headers.get("if-none-match", ""), etag):
            return Response(status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    return [
        Route("/api/introspect", introspect, methods=["POST"]),
        Route("/api/revoke", revoke, methods=["POST"]),
        Route("/api/revocations", revocations, methods=["GET"]),
    ]
