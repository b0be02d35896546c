"""The client credentials grant (RFC 6749 §4.4) without any web framework.

``parse_token_request`` turns the raw form and Authorization header into a request or an
``OAuthError``; ``grant`` checks the client's secret, scopes and audiences and issues the
token. The endpoint adapter only moves bytes.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote_plus

from swarm_oauth.clients.secrets import verify_secret
from swarm_oauth.identifiers import is_audience, is_client_id, is_scope_token
from swarm_oauth.store import ClientRecord
from swarm_oauth.tokens.issuer import IssuedToken, TokenIssuer

GRANT_TYPE = "client_credentials"
# RFC 6749 §3.1: the parameters it defines MUST NOT be repeated (RFC 8707 lets ``resource``
# repeat); others are ignored (§3.2), repeated or not.
SINGLE = frozenset({"grant_type", "scope", "audience", "client_id", "client_secret"})
MAX_PARAMETERS = 32


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """A well-formed client credentials request; the secret stays out of ``repr``."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...] | None
    audiences: tuple[str, ...] | None

    def __repr__(self) -> str:
        return f"TokenRequest(client_id={self.client_id!r})"


def invalid_client(description: str = "client authentication failed") -> OAuthError:
    """A 401 ``invalid_client``; unknown ids and wrong secrets get the same one, so an
    attacker cannot tell which ids exist."""
    return OAuthError("invalid_client", description, 401)


def parse_form(body: bytes) -> dict[str, list[str]]:
    """Decode an ``application/x-www-form-urlencoded`` body into repeated values; a
    parameter without a value (``scope=``, ``scope``) is left out, as RFC 6749 §3.1 says."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the request body is not valid UTF-8") from None
    if text.count("&") >= MAX_PARAMETERS:
        raise OAuthError("invalid_request", f"the form has more than {MAX_PARAMETERS} parameters")
    if "%" in text or "+" in text:
        try:
            pairs = parse_qsl(text, keep_blank_values=True, errors="strict")
        except UnicodeDecodeError:  # a percent-encoded byte that is not UTF-8
            raise OAuthError("invalid_request", "the request body is not valid UTF-8") from None
    else:
        # Nothing to decode: parse_qsl's own result, without its per-field unquoting
        # (a token request's form, parsed on every request, usually has none).
        pairs = [(name, value) for name, _, value in (f.partition("=") for f in text.split("&"))]
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        if value:
            form.setdefault(name, []).append(value)
    return form


def _single(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    if values is None:
        return None
    if len(values) > 1:
        raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
    return values[0]


def _basic_credentials(authorization: str) -> tuple[str, str]:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise invalid_client("unsupported authorization scheme")
    try:
        # Strict: only the alphabet, padding only at the end (RFC 4648 §3.3).
        decoded = binascii.a2b_base64(encoded.strip(), strict_mode=True).decode("utf-8")
    except (binascii.Error, ValueError):  # ValueError: non-ASCII, UnicodeDecodeError
        raise invalid_client("malformed Basic credentials") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise invalid_client("malformed Basic credentials")
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Base64.
    return unquote_plus(user), unquote_plus(password)


def _space_list(
    value: str | None, name: str, error: str, valid: Callable[[str], bool]
) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = tuple(dict.fromkeys(value.split(" ")))
    if not all(item and valid(item) for item in items):
        raise OAuthError(error, f"malformed {name} parameter")
    return items


def client_credentials(form: dict[str, list[str]], authorization: str | None) -> tuple[str, str]:
    """The client id and secret of ``client_secret_basic`` or ``client_secret_post``
    (RFC 6749 §2.3.1): exactly one of them, else an ``OAuthError``."""
    body_id, body_secret = _single(form, "client_id"), _single(form, "client_secret")
    if authorization:
        if body_secret is not None:
            raise OAuthError(
                "invalid_request", "use one client authentication method, not Basic and the body"
            )
        client_id, client_secret = _basic_credentials(authorization)
        if body_id is not None and body_id != client_id:
            raise OAuthError("invalid_request", "client_id differs from the Basic credentials")
    elif body_id is not None and body_secret is not None:
        client_id, client_secret = body_id, body_secret
    else:
        raise invalid_client("client authentication required")
    if not is_client_id(client_id):
        # No client can have it: refused before any cache or store sees it, so hostile
        # ids neither fill the cache nor reach a store that may choke on them (NUL).
        raise invalid_client("malformed client_id")
    return client_id, client_secret


def parse_token_request(form: dict[str, list[str]], authorization: str | None) -> TokenRequest:
    """Validate the form and client authentication method; no secret is checked here.

    A client id outside the client-id grammar is ``invalid_client`` at once."""
    for name, values in form.items():
        if len(values) > 1 and name in SINGLE:
            raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
    grant_type = _single(form, "grant_type")
    if not grant_type:
        raise OAuthError("invalid_request", "missing grant_type")
    if grant_type != GRANT_TYPE:
        raise OAuthError("unsupported_grant_type", "only client_credentials is supported")
    client_id, client_secret = client_credentials(form, authorization)
    scopes = _space_list(_single(form, "scope"), "scope", "invalid_scope", is_scope_token)
    audience = _space_list(_single(form, "audience"), "audience", "invalid_target", is_audience)
    resources = form.get("resource")
    if audience is not None and resources:
        raise OAuthError("invalid_request", "use either audience or resource, not both")
    if resources:
        if not all(is_audience(r) for r in resources):
            raise OAuthError("invalid_target", "malformed resource parameter")
        # RFC 8707 §2; a service's name (no URI at all) stays welcome, as with audience.
        if any("#" in r for r in resources):
            raise OAuthError("invalid_target", "a resource must not have a fragment")
        audience = tuple(dict.fromkeys(resources))
    return TokenRequest(client_id, client_secret, scopes, audience)


def authenticate(request: TokenRequest, client: ClientRecord | None, now: float) -> ClientRecord:
    """The client, if the request's secret is its current or still-valid previous one."""
    if client is None:
        # Hash anyway, so an unknown id costs the same time as a wrong secret.
        verify_secret(request.client_secret, None)
        raise invalid_client()
    if verify_secret(request.client_secret, client.secret_hash):
        return client
    grace = client.previous_secret_expires_at
    if (
        grace is not None
        and now < grace
        and verify_secret(request.client_secret, client.previous_secret_hash)
    ):
        return client
    raise invalid_client()


def grant(
    request: TokenRequest,
    client: ClientRecord | None,
    issuer: TokenIssuer,
    now: float,
    default_audiences: tuple[str, ...],
) -> IssuedToken:
    """Authenticate, check the requested scopes and audiences, and issue the token.

    No scope asked means every scope of the client; no audience asked means every audience
    of the client, or ``default_audiences`` when it has none (RFC 9068 needs an ``aud``).
    """
    client = authenticate(request, client, now)
    scopes = request.scopes if request.scopes is not None else client.scopes
    if request.scopes is not None:
        unknown = [s for s in request.scopes if s not in client.scopes]
        if unknown:
            raise OAuthError(
                "invalid_scope", "scope not allowed for this client: " + " ".join(unknown)
            )
    if request.audiences is not None:
        unknown = [a for a in request.audiences if a not in client.audiences]
        if unknown:
            raise OAuthError(
                "invalid_target", "audience not allowed for this client: " + " ".join(unknown)
            )
        audiences = request.audiences
    else:
        audiences = client.audiences or default_audiences
    return issuer.issue(client.client_id, scopes, audiences, now)
