"""Checking this server's own access tokens with the keys at hand: for forward-auth,
introspection and revocation.

The checks are the SDK verifier's (``swarm_oauth.sdk.verifier``, whose constants this
uses): a JWT of sane size, ``typ`` ``at+jwt``, a ``kid`` naming a published key and an
``alg`` that is that key's, a valid signature, the RFC 9068 claims, ``iss``, and
``exp``/``nbf``/``iat`` within the leeway; then revocation, and, when asked, audience and
scopes.

A service presents the same token on each of its requests, so a token that passed the
signature is remembered (a bounded number of them) and costs one signature check per
process, not one per request. What changes with time (expiry, revocation) is checked on
every call, and the memory is dropped whenever the keys change, so a withdrawn key stops
its tokens at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from swarm_oauth.keys import KeyRing, LoadedKey
from swarm_oauth.sdk.verifier import ACCESS_TOKEN_TYPES, MAX_TOKEN_LENGTH, REQUIRED_CLAIMS
from swarm_oauth.tokens.issuer import VERIFY_LEEWAY_SECONDS
from swarm_oauth.tokens.revocation import RevocationList

MAX_REMEMBERED = 10_000


class InvalidToken(Exception):
    """Not a valid access token of this issuer (RFC 6750 ``invalid_token``); the message
    says why and never quotes the token. ``client_id`` is the client of a token whose
    signature verified (one expired, revoked, or for another audience), else ``None``."""

    def __init__(self, reason: str, client_id: str | None = None) -> None:
        super().__init__(reason)
        self.client_id = client_id


class InsufficientScope(Exception):
    """A valid token that lacks required scopes (RFC 6750 ``insufficient_scope``)."""

    def __init__(self, missing: Iterable[str], client_id: str | None = None) -> None:
        self.missing = tuple(sorted(missing))
        self.client_id = client_id
        super().__init__(f"the token lacks scope(s): {' '.join(self.missing)}")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """The claims of a token whose signature and issuer checked out."""

    claims: Mapping[str, Any]
    client_id: str
    jti: str
    issued_at: float
    expires_at: float
    audiences: tuple[str, ...]
    scope: str

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the token grants."""
        return frozenset(self.scope.split())


class TokenVerifier:
    """Verifies tokens of ``issuer`` with the keys of ``keyring()`` and the revocations of
    ``revocations()``; both are read on every call, so a replaced snapshot counts at once.

    Not thread-safe: one event loop calls it.
    """

    def __init__(
        self,
        issuer: str,
        keyring: Callable[[], KeyRing],
        revocations: Callable[[], RevocationList],
        *,
        leeway: float = VERIFY_LEEWAY_SECONDS,
        max_remembered: int = MAX_REMEMBERED,
    ) -> None:
        if max_remembered < 1:
            raise ValueError("max_remembered must be at least 1")
        self.issuer = issuer
        self.leeway = leeway
        self._keyring = keyring
        self._revocations = revocations
        self._max_remembered = max_remembered
        self._ring: KeyRing | None = None
        self._keys: dict[str, LoadedKey] = {}
        self._remembered: dict[str, VerifiedToken] = {}

    @property
    def remembered(self) -> int:
        """How many verified tokens are remembered (at most ``max_remembered``)."""
        return len(self._remembered)

    def check(self, token: str, now: float, *, exp_leeway: float | None = None) -> VerifiedToken:
        """The token's claims if it is ours, current and not revoked; else ``InvalidToken``.

        ``exp_leeway`` (by default the verifier's leeway) is how long after its ``exp`` a
        token still passes: none for introspection, whose ``active`` means right now.
        """
        grace = self.leeway if exp_leeway is None else exp_leeway
        ring = self._keyring()
        if ring is not self._ring:
            self._ring = ring
            self._keys = {key.kid: key for key in ring.keys}
            self._remembered.clear()
        verified = self._remembered.get(token)
        if verified is None:
            verified = self._decode(token, now, grace)
            if len(self._remembered) >= self._max_remembered:
                # The oldest goes first: dicts keep insertion order.
                del self._remembered[next(iter(self._remembered))]
            self._remembered[token] = verified
        elif verified.expires_at <= now - grace:
            if verified.expires_at <= now - self.leeway:
                del self._remembered[token]
            raise InvalidToken("the token has expired", verified.client_id)
        if self._revocations().revoked(verified.client_id, verified.jti, verified.issued_at):
            raise InvalidToken("the token has been revoked", verified.client_id)
        return verified

    def authorize(
        self, token: str, now: float, audience: str | None = None, scopes: Iterable[str] = ()
    ) -> VerifiedToken:
        """Like ``check``, and the token must name ``audience`` (``InvalidToken``) and grant
        every one of ``scopes`` (``InsufficientScope``)."""
        verified = self.check(token, now)
        if audience is not None and audience not in verified.audiences:
            raise InvalidToken(
                f"the token is not meant for audience {audience}", verified.client_id
            )
        missing = set(scopes) - verified.scopes
        if missing:
            raise InsufficientScope(missing, verified.client_id)
        return verified

    def _decode(self, token: str, now: float, grace: float) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken(f"the token is longer than {MAX_TOKEN_LENGTH} characters")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("the token is not a JWT") from None
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("the token is not an access token (typ at+jwt)")
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None or not key.published_at(now):
            raise InvalidToken("the token is not signed with a key of this issuer")
        if header.get("alg") != key.alg:
            raise InvalidToken("the token's alg is not its key's")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[key.alg],
                issuer=self.issuer,
                # The times are checked below against ``now``, the caller's clock, as a
                # remembered token is: PyJWT would read the clock itself.
                options={
                    "require": REQUIRED_CLAIMS,
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidIssuerError:
            raise InvalidToken("the token was not issued here") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature does not verify") from None
        except jwt.PyJWTError:
            raise InvalidToken("the token's claims are malformed") from None
        verified = _verified(claims)
        if verified.expires_at <= now - grace:
            raise InvalidToken("the token has expired", verified.client_id)
        nbf = claims.get("nbf", verified.issued_at)
        if not _is_number(nbf):
            raise InvalidToken("the token's claims are malformed")
        if max(verified.issued_at, float(nbf)) > now + self.leeway:
            raise InvalidToken("the token is not valid yet", verified.client_id)
        return verified


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _verified(claims: dict[str, Any]) -> VerifiedToken:
    """The claims checked for the types this server writes."""
    client_id, jti, scope, aud = (claims.get(name) for name in ("client_id", "jti", "scope", "aud"))
    audiences = (aud,) if isinstance(aud, str) else aud
    if (
        not _is_number(claims.get("exp"))
        or not _is_number(claims.get("iat"))
        or not isinstance(client_id, str)
        or not isinstance(jti, str)
        or not isinstance(scope, str | None)
        or not isinstance(audiences, list | tuple)
        or not all(isinstance(a, str) for a in audiences)
    ):
        raise InvalidToken("the token's claims are malformed")
    return VerifiedToken(
        claims=claims,
        client_id=client_id,
        jti=jti,
        issued_at=float(claims["iat"]),
        expires_at=float(claims["exp"]),
        audiences=tuple(audiences),
        scope=scope or "",
    )
