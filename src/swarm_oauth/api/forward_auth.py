"""``/api/verify``: forward-auth for reverse proxies (nginx ``auth_request``, Caddy
``forward_auth``, Traefik ``ForwardAuth``), as a bare ASGI callable.

A proxy asks it about every request of every service it protects, with the original
method and headers, so it answers any method, never reads a body, and checks the token
with the keys and revocations already in memory (``swarm_oauth.tokens.verify``): no
store query and no HTTP call per request. The answer is the status the proxy acts on:
``200`` with the identity in ``X-Auth-*`` headers for the proxy to pass upstream; ``401``
or ``403`` with an RFC 6750 challenge for the proxy to hand back to the caller. nginx
accepts nothing else from an auth service (any other status becomes its own 500), so a
malformed ``Authorization`` header is a 401 here, not RFC 6750's 400; a 400 is kept for
the proxy's own mistake, a malformed query.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import Receive, Scope, Send

from swarm_oauth.api.metrics import FORWARD_AUTH
from swarm_oauth.api.observe import LOG_FIELDS
from swarm_oauth.api.responses import NO_STORE, json_answer, send_answer
from swarm_oauth.identifiers import is_audience, is_scope_token
from swarm_oauth.runtime import Runtime
from swarm_oauth.sdk.bearer import challenge
from swarm_oauth.serving.direct import Answer, Headers
from swarm_oauth.tokens import InsufficientScope, InvalidToken, TokenVerifier, VerifiedToken
from swarm_oauth.web import error_body

VERIFY_PATH = "/api/verify"
REALM = "swarm-oauth"
PARAMETERS = frozenset({"audience", "scope"})
RETRY_AFTER_SECONDS = b"1"
MAX_QUERY_BYTES = 2048

ALLOWED = FORWARD_AUTH.labels("allowed")


# RFC 6750 §2.1's b64token, which every JWT is. One regular expression, because this runs
# on every request: a scan in Python of the token's characters cost more than the rest of
# the check.
B64TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")


class MalformedCredentials(ValueError):
    """The Authorization header is there but holds no usable Bearer credential."""


def bearer_token(authorization: list[str]) -> str | None:
    """The Bearer token of the request's ``Authorization`` values; ``None`` without one
    (another scheme included, RFC 6750 §3.1)."""
    if not authorization:
        return None
    if len(authorization) > 1:
        raise MalformedCredentials("more than one Authorization header")
    scheme, _, token = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    token = token.strip()
    if B64TOKEN.fullmatch(token) is None:
        raise MalformedCredentials("the Bearer credential must be one token (RFC 6750 b64token)")
    return token


class BadQuery(ValueError):
    """The proxy's query string is not one this endpoint understands."""


# A proxy sends one query string per protected route, on every request.
@functools.lru_cache(maxsize=256)
def requirements(query_string: bytes) -> tuple[str | None, tuple[str, ...]]:
    """The ``audience`` and the space-separated ``scope`` that a token must carry.

    An unknown, repeated or empty parameter is refused rather than ignored: a proxy
    configured with ``scopes=`` instead of ``scope=``, or whose template left
    ``audience=`` empty, must not let every token through.
    """
    if len(query_string) > MAX_QUERY_BYTES:  # also what bounds the cache's memory
        raise BadQuery(f"the query string is longer than {MAX_QUERY_BYTES} bytes")
    try:
        pairs = parse_qsl(
            query_string.decode("ascii"), keep_blank_values=True, max_num_fields=len(PARAMETERS)
        )
    except (UnicodeDecodeError, ValueError):
        raise BadQuery("the query string is malformed") from None
    values: dict[str, str] = {}
    for name, value in pairs:
        if name not in PARAMETERS:
            raise BadQuery(f"unknown query parameter {name!r} (use audience and scope)")
        if name in values:
            raise BadQuery(f"query parameter {name!r} is repeated")
        if not value.strip():
            raise BadQuery(f"query parameter {name!r} is empty (leave it out to require none)")
        values[name] = value
    audience = values.get("audience")
    if audience is not None and not is_audience(audience):
        raise BadQuery("malformed audience parameter")
    scopes = tuple(values.get("scope", "").split())
    if not all(is_scope_token(s) for s in scopes):
        raise BadQuery("malformed scope parameter")
    return audience, scopes


@dataclass(frozen=True, slots=True)
class Refusal:
    """How to turn a request away: status, RFC 6750 error, reason and challenge."""

    status: int
    error: str
    description: str
    challenge: str
    client_id: str | None = None  # of a token whose signature verified


def refusal(
    status: int,
    error: str,
    description: str,
    scopes: Iterable[str] = (),
    client_id: str | None = None,
) -> Refusal:
    """A refusal whose challenge carries ``error``, ``description`` and ``scopes``."""
    return Refusal(
        status, error, description, challenge(REALM, error, description, scopes), client_id
    )


# RFC 6750 §3.1: no error attributes in the challenge when no credentials came at all.
NO_TOKEN = Refusal(401, "invalid_token", "a Bearer token is required", challenge(REALM))


def decide(
    verifier: TokenVerifier,
    authorization: list[str],
    audience: str | None,
    scopes: tuple[str, ...],
    now: float,
) -> VerifiedToken | Refusal:
    """The token that lets the request pass, or why it may not."""
    try:
        token = bearer_token(authorization)
    except MalformedCredentials as exc:
        return refusal(401, "invalid_request", str(exc))
    if token is None:
        return NO_TOKEN
    try:
        return verifier.authorize(token, now, audience, scopes)
    except InvalidToken as exc:
        return refusal(401, "invalid_token", str(exc), client_id=exc.client_id)
    except InsufficientScope as exc:
        return refusal(403, "insufficient_scope", str(exc), scopes, exc.client_id)


class ForwardAuthEndpoint:
    """Answers whether a request's bearer token may pass, for a reverse proxy.

    Served two ways with the same answers: as an ASGI app, for any method, and as a
    direct endpoint (``serving/direct.py``) for a plain ``GET``, what proxies send; a
    check never waits for anything, so the direct endpoint answers every request offered.
    """

    method = "GET"
    max_body_bytes = 0

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def answer_now(
        self, headers: Headers, body: bytes, query: bytes, fields: dict[str, object]
    ) -> Answer:
        """The answer to a request with these ``headers`` and raw ``query`` string; the
        body is never read. The access line gets the client of a token whose signature
        verified, and a refusal's error and reason (never the token)."""
        try:
            audience, scopes = requirements(query)
        except BadQuery as exc:
            FORWARD_AUTH.labels("bad_query").inc()
            return json_answer(400, _logged(fields, "invalid_request", str(exc)), NO_STORE)
        if not self.runtime.watcher.fresh():
            # Revocations may be missing from a view the store no longer confirms.
            FORWARD_AUTH.labels("temporarily_unavailable").inc()
            unavailable = _logged(
                fields, "temporarily_unavailable", "revocations cannot be checked"
            )
            retry = (b"retry-after", RETRY_AFTER_SECONDS)
            return json_answer(503, unavailable, (*NO_STORE, retry))
        authorization = [
            value.decode("latin-1") for name, value in headers if name == b"authorization"
        ]
        outcome = decide(self.runtime.verifier, authorization, audience, scopes, time.time())
        if isinstance(outcome, Refusal):
            FORWARD_AUTH.labels(outcome.error).inc()
            if outcome.client_id is not None:
                fields["client_id"] = outcome.client_id
            return json_answer(
                outcome.status,
                _logged(fields, outcome.error, outcome.description),
                ((b"www-authenticate", outcome.challenge.encode()), *NO_STORE),
            )
        ALLOWED.inc()
        fields["client_id"] = outcome.client_id
        return Answer(
            200,
            (
                (b"x-auth-client-id", outcome.client_id.encode()),
                (b"x-auth-scope", outcome.scope.encode()),
                (b"x-auth-audience", " ".join(outcome.audiences).encode()),
                *NO_STORE,
            ),
            b"",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fields = scope.setdefault(LOG_FIELDS, {})
        await send_answer(
            send, self.answer_now(scope["headers"], b"", scope["query_string"], fields)
        )


def _logged(fields: dict[str, object], error: str, description: str) -> dict[str, str]:
    """A refusal's body, its error and reason also put in the access line's ``fields``."""
    fields["error"], fields["error_description"] = error, description
    return error_body(error, description)
