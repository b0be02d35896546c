"""What a service imports to use its swarm-oauth identity and to check others'.

    from swarm_oauth.sdk import TokenSource, Verifier

    token = TokenSource.from_env().token()               # call it again whenever needed
    claims = Verifier(issuer=URL, audience=AUD).verify(token)   # or raises TokenError

Needs only httpx and PyJWT[crypto] (the bare ``swarm-oauth`` distribution, alias
``swarm-oauth[sdk]``). Framework glue that needs more lives in its own module:
``swarm_oauth.sdk.fastapi`` (FastAPI) and ``swarm_oauth.sdk.requests_auth`` (requests).
``BearerTokenMiddleware`` is pure ASGI and needs nothing extra.
"""

from swarm_oauth.sdk.asgi import BearerTokenMiddleware
from swarm_oauth.sdk.auth import BearerAuth
from swarm_oauth.sdk.errors import (
    ConfigurationError,
    ExcessiveLifetime,
    ExpiredToken,
    InsufficientScope,
    InvalidAlgorithm,
    InvalidAudience,
    InvalidIssuer,
    InvalidSignature,
    InvalidTokenType,
    IssuerConfigurationError,
    KeySetUnavailable,
    MalformedToken,
    NotYetValid,
    SecretFileError,
    SwarmOAuthError,
    TokenError,
    TokenRequestError,
    TokenSourceError,
    UnknownKey,
)
from swarm_oauth.sdk.scopes import require_scopes, scopes_of
from swarm_oauth.sdk.token_source import TokenSource
from swarm_oauth.sdk.verifier import Verifier

__all__ = [
    "BearerAuth",
    "BearerTokenMiddleware",
    "ConfigurationError",
    "ExcessiveLifetime",
    "ExpiredToken",
    "InsufficientScope",
    "InvalidAlgorithm",
    "InvalidAudience",
    "InvalidIssuer",
    "InvalidSignature",
    "InvalidTokenType",
    "IssuerConfigurationError",
    "KeySetUnavailable",
    "MalformedToken",
    "NotYetValid",
    "SecretFileError",
    "SwarmOAuthError",
    "TokenError",
    "TokenRequestError",
    "TokenSource",
    "TokenSourceError",
    "UnknownKey",
    "Verifier",
    "require_scopes",
    "scopes_of",
]
