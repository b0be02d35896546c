"""Access tokens: the client credentials grant, RFC 9068 JWTs, verification and revocation."""

from swarm_oauth.tokens.grant import (
    OAuthError,
    TokenRequest,
    grant,
    invalid_client,
    parse_form,
    parse_token_request,
)
from swarm_oauth.tokens.issuer import IssuedToken, NoSigningKey, TokenIssuer
from swarm_oauth.tokens.revocation import RevocationList
from swarm_oauth.tokens.verify import InsufficientScope, InvalidToken, TokenVerifier, VerifiedToken

__all__ = [
    "InsufficientScope",
    "InvalidToken",
    "IssuedToken",
    "NoSigningKey",
    "OAuthError",
    "RevocationList",
    "TokenIssuer",
    "TokenRequest",
    "TokenVerifier",
    "VerifiedToken",
    "grant",
    "invalid_client",
    "parse_form",
    "parse_token_request",
]
