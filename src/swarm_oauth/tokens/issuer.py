"""Access tokens: JWTs in the RFC 9068 profile, signed with the current key."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jwt

from swarm_oauth.keys import KeyRing

DEFAULT_LIFETIME_SECONDS = 900
# Room left between a token's expiry and its key leaving the JWKS, for clock skew.
UNPUBLISH_SLACK_SECONDS = 60


class NoSigningKey(RuntimeError):
    """No key may sign right now (the store has none active)."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A signed access token and what the token response says about it."""

    access_token: str
    expires_in: int
    scope: str

    def __repr__(self) -> str:  # never print a bearer token by accident
        return f"IssuedToken(expires_in={self.expires_in}, scope={self.scope!r})"


class TokenIssuer:
    """Signs access tokens for an issuer with whatever key ``keyring()`` says is current."""

    def __init__(
        self,
        issuer: str,
        keyring: Callable[[], KeyRing],
        lifetime: int = DEFAULT_LIFETIME_SECONDS,
    ) -> None:
        self.issuer = issuer
        self.lifetime = lifetime
        self._keyring = keyring

    def issue(
        self, client_id: str, scopes: Sequence[str], audiences: Sequence[str], now: float
    ) -> IssuedToken:
        """A token for ``client_id`` with the granted scopes and audiences."""
        key = self._keyring().signing_key(now)
        if key is None:
            raise NoSigningKey("no signing key is active")
        issued_at = int(now)
        expires_at = issued_at + self.lifetime
        if key.record.unpublish_at is not None:
            # Never outlive the key's place in the JWKS, whatever lifetime the operator
            # told `keys rotate`: a token must stay verifiable until it expires.
            expires_at = min(expires_at, int(key.record.unpublish_at) - UNPUBLISH_SLACK_SECONDS)
        scope = " ".join(scopes)
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": client_id,
            "client_id": client_id,
            "aud": audiences[0] if len(audiences) == 1 else list(audiences),
            "iat": issued_at,
            "exp": expires_at,
            "jti": secrets.token_urlsafe(16),
        }
        if scope:
            claims["scope"] = scope
        token = jwt.encode(
            claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"}
        )
        return IssuedToken(token, expires_at - issued_at, scope)
