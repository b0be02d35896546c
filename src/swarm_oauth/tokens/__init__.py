"""Access tokens: the client credentials grant and RFC 9068 JWTs."""

from swarm_oauth.tokens.grant import (
    OAuthError,
    TokenRequest,
    grant,
    invalid_client,
    parse_form,
    parse_token_request,
)
from swarm_oauth.tokens.issuer import IssuedToken, NoSigningKey, TokenIssuer

__all__ = [
    "IssuedToken",
    "NoSigningKey",
    "OAuthError",
    "TokenIssuer",
    "TokenRequest",
    "grant",
    "invalid_client",
    "parse_form",
    "parse_token_request",
]
