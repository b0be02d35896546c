"""RFC 6750 on the resource-server side, framework-free: find the bearer token in a
request, verify it, and when refusing, say why in the ``WWW-Authenticate`` challenge.

Both the ASGI middleware and the FastAPI dependency are thin shells around
``authenticate``, so they answer the same request the same way.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from swarm_oauth.sdk.cache import Claims
from swarm_oauth.sdk.errors import (
    InsufficientScope,
    IssuerConfigurationError,
    KeySetUnavailable,
    TokenError,
)
from swarm_oauth.sdk.verifier import Verifier

log = logging.getLogger("swarm_oauth.sdk")

# RFC 6750 §3: error_description and scope values are limited to these characters.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
MAX_DESCRIPTION = 200
RETRY_AFTER_SECONDS = 5


class InvalidRequest(ValueError):
    """The Authorization header is present but not a usable Bearer credential (400)."""


def bearer_token(authorization: Sequence[str]) -> str | None:
    """The token of the request's ``Authorization`` header values, ``None`` if it has none.

    Another scheme (e.g. Basic) counts as no bearer credentials, which RFC 6750 §3.1
    answers with a bare challenge; several headers or a blank token are a bad request.
    """
    if not authorization:
        return None
    if len(authorization) > 1:
        raise InvalidRequest("more than one Authorization header")
    scheme, _, credentials = authorization[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    words = credentials.split()
    if len(words) != 1:  # none, or whitespace inside
        raise InvalidRequest("the Bearer credential must be a single non-empty token")
    return words[0]


def quoted(value: str) -> str:
    """``value`` as a challenge's quoted-string, with the characters RFC 6750 forbids dropped."""
    return '"' + _UNSAFE.sub("", value)[:MAX_DESCRIPTION] + '"'


def challenge(
    realm: str | None = None,
    error: str | None = None,
    description: str | None = None,
    scope: Iterable[str] = (),
) -> str:
    """A ``WWW-Authenticate`` value: ``Bearer`` with the RFC 6750 §3 attributes given."""
    params = []
    if realm:
        params.append(f"realm={quoted(realm)}")
    if error:
        params.append(f"error={quoted(error)}")
    if description:
        params.append(f"error_description={quoted(description)}")
    if scopes := " ".join(sorted(scope)):
        params.append(f"scope={quoted(scopes)}")
    return "Bearer " + ", ".join(params) if params else "Bearer"


@dataclass(frozen=True, slots=True)
class Rejection:
    """How to refuse a request: status, error code, reason and response headers."""

    status_code: int
    error: str
    description: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        """The JSON body, in the token server's error shape."""
        return json.dumps({"error": self.error, "error_description": self.description}).encode()

    def response_headers(self) -> dict[str, str]:
        """The refusal's headers: its own (challenge, ``Retry-After``) on a JSON no-store one."""
        return {"Content-Type": "application/json", "Cache-Control": "no-store", **self.headers}


async def authenticate(
    verifier: Verifier,
    authorization: Sequence[str],
    scopes: Iterable[str] = (),
    realm: str | None = None,
) -> Claims | Rejection:
    """The verified claims of the request's bearer token, or how to refuse the request."""
    try:
        token = bearer_token(authorization)
    except InvalidRequest as error:
        header = challenge(realm, "invalid_request", str(error))
        return Rejection(400, "invalid_request", str(error), {"WWW-Authenticate": header})
    if token is None:
        # RFC 6750 §3.1: no error code in the challenge when no credentials were sent.
        description = "a Bearer token is required"
        return Rejection(401, "invalid_token", description, {"WWW-Authenticate": challenge(realm)})
    try:
        return await verifier.averify(token, scopes=scopes)
    except TokenError as error:
        required = error.required if isinstance(error, InsufficientScope) else ()
        header = challenge(realm, error.error, error.description, required)
        return Rejection(
            error.status_code, error.error, error.description, {"WWW-Authenticate": header}
        )
    # Neither is the caller's fault: the detail (URLs, causes) goes to the log, not the client.
    except KeySetUnavailable as error:
        log.error("cannot verify bearer tokens: %s", error)
        return Rejection(
            503,
            "temporarily_unavailable",
            "token verification keys are unavailable",
            {"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    except IssuerConfigurationError as error:
        log.error("cannot verify bearer tokens, the verifier's issuer is misconfigured: %s", error)
        return Rejection(500, "server_error", "this service cannot verify tokens")
