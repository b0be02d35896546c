"""``Verifier``: is this bearer token an access token that our issuer made for us?

Checks, in order, each failure with its own ``TokenError`` subclass: the token is a
JWT of sane size; its ``alg`` is on the allow-list (so ``none`` and HMAC never reach a
key); ``typ`` is ``at+jwt`` (RFC 9068 §4, so an ID token or another JWT cannot pass as
an access token); ``kid`` names a published key whose own algorithm is that ``alg``;
the signature verifies with that key; the RFC 9068 §2.2 claims are present; ``iss`` is
the issuer; ``aud`` names this service; ``exp``/``nbf``/``iat`` hold within ``leeway``;
the lifetime ``exp - iat`` is at most ``max_lifetime`` when one is set; when asked, the
token is not revoked; and, when asked, the ``scope`` claim grants every required scope.
Keys come from a cached ``KeySet`` and revocations from a ``Revocations`` list refreshed
in the background, so the steady state makes no request per token.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
import jwt

from swarm_oauth.sdk._flow import Runner
from swarm_oauth.sdk.cache import DEFAULT_SIZE, Claims, Verified, VerifiedCache, sent
from swarm_oauth.sdk.errors import (
    ConfigurationError,
    ExcessiveLifetime,
    ExpiredToken,
    InvalidAlgorithm,
    InvalidAudience,
    InvalidIssuer,
    InvalidSignature,
    InvalidTokenType,
    MalformedToken,
    NotYetValid,
    RevokedToken,
    TokenError,
    UnknownKey,
)
from swarm_oauth.sdk.jwks import KeySet
from swarm_oauth.sdk.revocations import PATH, RevocationList, Revocations
from swarm_oauth.sdk.scopes import required_scopes, scopes_of

# What the token server can sign with; never "none" nor an HMAC algorithm.
DEFAULT_ALGORITHMS = ("ES256", "RS256", "EdDSA")
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"]
MAX_TOKEN_LENGTH = 16 * 1024
MAX_KNOWN_HEADERS = 64


def _shown(value: Any) -> str:
    """A claim value fit for an error message: repr, cut short (it may be anything)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unverified_header(encoded: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS from its first segment, not yet trusted.

    Read here rather than with ``jwt.get_unverified_header``, which decodes the whole
    token and costs a fifth of a full verification; PyJWT reads the header again
    (the same bytes, under the signature) when it verifies.
    """
    try:
        header = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, RecursionError):  # binascii.Error is a ValueError
        raise MalformedToken("not a JWT: the header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise MalformedToken("not a JWT: the header is not a JSON object")
    return header


def _claim(token: str, name: str) -> str:
    """A claim of a token whose payload PyJWT already decoded, for an error message.

    PyJWT checks claims only after the signature verified, so the value is authentic.
    """
    return _shown(jwt.decode(token, options={"verify_signature": False}).get(name))


class Verifier:
    """Verifies access tokens of one issuer for one service (audience)."""

    def __init__(
        self,
        issuer: str,
        audience: str | Sequence[str],
        jwks_url: str | None = None,
        *,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        max_lifetime: float | None = None,
        cache_size: int = DEFAULT_SIZE,
        refetch_interval: float = 5.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        ca_bundle: str | Path | None = None,
        check_revocations: bool = False,
        revocations_url: str | None = None,
        revocation_refresh: float = 5.0,
        revocation_max_stale: float = 60.0,
    ) -> None:
        """Configure; the keys (and revocations) are fetched on first use, not here.

        ``audience`` may be several names, any one of which the token's ``aud`` must
        contain. ``max_lifetime`` (seconds, off by default) refuses tokens whose
        ``exp - iat`` is longer. ``cache_size`` bounds how many verified tokens are
        kept (``cache``; 0 keeps none). ``jwks_url`` skips metadata discovery.
        ``refetch_interval`` bounds how often an unknown ``kid`` can make the verifier
        refetch the JWKS; ``max_age`` is how long fetched keys are used before a refresh
        in the background (they keep being used meanwhile, and when it fails).
        ``ca_bundle`` is a PEM file of the CAs an https issuer is checked against
        (default: the system's; your own http clients bring their own ``verify=``).
        ``check_revocations`` refuses revoked tokens, by the list at ``revocations_url``
        (default ``{issuer}/api/revocations``), never older than ``revocation_refresh``
        seconds while the issuer answers; after ``revocation_max_stale`` seconds without
        a refresh every call raises ``RevocationsUnavailable`` (see ``revocations``).
        """
        self.issuer = issuer
        self.audience = audience if isinstance(audience, str) else list(audience)
        if not self.audience:
            raise ConfigurationError("audience is required")
        self.algorithms = tuple(algorithms)
        unsafe = [alg for alg in self.algorithms if alg == "none" or alg.startswith("HS")]
        if unsafe:
            raise ConfigurationError(f"algorithms {unsafe} cannot verify third-party tokens")
        self.leeway = leeway
        if max_lifetime is not None and max_lifetime <= 0:
            raise ConfigurationError(f"max_lifetime must be positive, not {max_lifetime}")
        self.max_lifetime = max_lifetime
        self.cache = VerifiedCache(cache_size)
        self._headers: dict[str, tuple[str, str]] = {}  # encoded header that passed: alg, kid
        self.keys = KeySet(
            issuer,
            jwks_url,
            refetch_interval=refetch_interval,
            max_age=max_age,
            timeout=timeout,
            http_client=http_client,
            async_http_client=async_http_client,
            ca_bundle=ca_bundle,
            on_change=self.cache.drop_keys,
        )
        self.revocations: Revocations | None = None
        if check_revocations:
            self.revocations = Revocations(
                revocations_url or issuer.rstrip("/") + PATH,
                Runner(timeout, http_client, async_http_client, ca_bundle),
                refresh=revocation_refresh,
                max_stale=revocation_max_stale,
                keep=leeway,  # a token is accepted up to exp + leeway
                on_change=self._revoked,
            )
        elif revocations_url is not None:
            raise ConfigurationError("revocations_url is used only with check_revocations=True")

    def verify(self, token: str, *, scopes: str | Iterable[str] = ()) -> Claims:
        """The token's claims if it is valid (and grants ``scopes``); else a ``TokenError``.

        The claims are read-only and shared by every call with the same token.
        """
        # Both read before the cache: a revocation list that arrives later drops what
        # it revokes from the cache, and keeps a verification under way from adding it.
        epoch = self.cache.epoch
        revoked = self.revocations.current() if self.revocations is not None else None
        if (verified := self._cached(token)) is not None:
            self.keys.refresh_if_due()  # so a key that left the JWKS is noticed
        else:
            alg, kid = self._header(token)
            verified = self._verified(token, alg, kid, self.keys.get(kid), revoked, epoch)
        return verified.grant(scopes)

    async def averify(self, token: str, *, scopes: str | Iterable[str] = ()) -> Claims:
        """Like ``verify``; a fetch, when one is due, does not block the event loop."""
        required = required_scopes(scopes)
        if isinstance(token, str) and len(token) <= MAX_TOKEN_LENGTH:
            claims = self.recall(sent(token), required)
            if claims is not None:
                return claims
        epoch = self.cache.epoch
        revoked = await self.revocations.acurrent() if self.revocations is not None else None
        if (verified := self._cached(token)) is not None:
            self.keys.arefresh_if_due()
        else:
            alg, kid = self._header(token)
            key = await self.keys.aget(kid)
            verified = self._verified(token, alg, kid, key, revoked, epoch)
        return verified.grant(required)

    def recall(self, authorization: bytes, scopes: frozenset[str]) -> Claims | None:
        """The claims ``averify`` would return at once from the cache, for the token of an
        ``Authorization`` header's value as sent (``Bearer``, one space, the token) and
        ``scopes``; ``None`` when it would have to do more (verify, wait, or refuse) or
        the value is spelled otherwise.

        The fast path of async glue: no coroutine, no exception, no copy of the token. A
        refresh that is due is started in a task on the running event loop.
        """
        if self.revocations is not None and self.revocations.ready() is None:
            return None
        verified = self.cache.get_sent(authorization)
        if verified is None or not scopes <= verified.scopes:
            return None
        self.keys.arefresh_if_due()  # so a key that left the JWKS is noticed
        return verified.claims

    def _cached(self, token: object) -> Verified | None:
        """What an earlier call proved about ``token``, if that still holds."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            return None  # _header says what is wrong with it
        return self.cache.get(token)

    def _revoked(self, revocations: RevocationList) -> None:
        """Forget the verified tokens a new revocation list revokes."""
        self.cache.drop(revocations.revoked)

    def _header(self, token: str) -> tuple[str, str]:
        """The ``alg`` and ``kid`` of a token whose header passes the checks before keys."""
        if not isinstance(token, str):
            raise MalformedToken(f"token is {type(token).__name__}, not text")
        if not token:
            raise MalformedToken("token is empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise MalformedToken(f"token is longer than {MAX_TOKEN_LENGTH} characters")
        encoded, dot, rest = token.partition(".")
        if not dot or rest.count(".") != 1:
            raise MalformedToken("not a JWT: a compact JWS has three dot-separated parts")
        # An issuer signs all its tokens under a handful of headers (one per key): the
        # checks below are made once per header, not once per token.
        if (known := self._headers.get(encoded)) is not None:
            return known
        header = _unverified_header(encoded)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidAlgorithm(
                f"alg {_shown(alg)} is not allowed (allowed: {', '.join(self.algorithms)})"
            )
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidTokenType(f"typ {_shown(typ)} is not at+jwt: not an access token")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise UnknownKey("token header has no kid")
        if len(self._headers) < MAX_KNOWN_HEADERS:  # bounded: headers come from anyone
            self._headers[encoded] = (alg, kid)
        return alg, kid

    def _verified(
        self,
        token: str,
        alg: str,
        kid: str,
        key: jwt.PyJWK,
        revoked: RevocationList | None,
        epoch: int,
    ) -> Verified:
        """The token verified in full with ``key`` (and checked against the ``revoked``
        list), and remembered for the next call unless the cache dropped anything since
        ``epoch``."""
        # Checked here, not left to PyJWT: before 2.13 it verified with the key's own
        # algorithm whatever the header said, so an HMAC key or a mislabelled token passed.
        if key.algorithm_name != alg:
            raise InvalidAlgorithm(
                f"alg {alg} is not the algorithm of key {kid!r} ({key.algorithm_name})"
            )
        try:
            decoded = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise self._explain(error, token) from None
        claims = Claims(decoded)
        try:
            expires, issued = float(claims["exp"]), float(claims["iat"])
        except OverflowError:  # integers float() cannot hold, which PyJWT lets through
            raise MalformedToken("exp or iat is out of range") from None
        if self.max_lifetime is not None:
            lifetime = expires - issued
            if lifetime > self.max_lifetime:
                raise ExcessiveLifetime(
                    f"token lifetime {lifetime:g}s (exp - iat) exceeds {self.max_lifetime:g}s"
                )
        if revoked is not None and revoked.revoked(claims):
            raise RevokedToken("token has been revoked")
        verified = Verified(claims, scopes_of(claims), expires + self.leeway, kid)
        self.cache.put(token, verified, epoch)
        return verified

    def _explain(self, error: jwt.PyJWTError, token: str) -> TokenError:
        """The SDK's error for PyJWT's, naming the offending value where that helps."""
        if isinstance(error, jwt.InvalidSignatureError):
            return InvalidSignature("signature verification failed")
        if isinstance(error, jwt.InvalidAlgorithmError):
            return InvalidAlgorithm(str(error))
        if isinstance(error, jwt.MissingRequiredClaimError):
            if error.claim == "aud":
                return InvalidAudience("token has no aud claim")
            return MalformedToken(f"required claim {error.claim!r} is missing")
        if isinstance(error, jwt.ExpiredSignatureError):
            return ExpiredToken(f"token expired (exp {_claim(token, 'exp')})")
        if isinstance(error, jwt.ImmatureSignatureError):
            return NotYetValid(f"token is not valid yet: {error}")
        if isinstance(error, jwt.InvalidAudienceError):
            return InvalidAudience(
                f"aud {_claim(token, 'aud')} does not include {_shown(self.audience)}"
            )
        if isinstance(error, jwt.InvalidIssuerError):
            return InvalidIssuer(f"iss {_claim(token, 'iss')} is not {self.issuer!r}")
        return MalformedToken(str(error))
