"""Typed errors of the SDK: what went wrong, said precisely enough to act on.

``TokenError`` and its subclasses mean "this token is not acceptable": an HTTP service
answers them with 401 (or 403 for ``InsufficientScope``) per RFC 6750 §3.1, and
``error``/``description`` are what goes into the ``WWW-Authenticate`` challenge.
``KeySetUnavailable`` means the verifier could not get the issuer's keys: not the
caller's fault, so glue answers 503, as it does ``RevocationsUnavailable`` (a verifier that
checks revocations has no list recent enough). ``IssuerConfigurationError`` means it could not
even find them, most likely because its ``issuer`` setting is wrong: glue answers 500.
``TokenSourceError`` and its subclasses are what a service sees when it cannot obtain
its own token; ``ConfigurationError`` is a setting that cannot work. No message ever
contains a secret or a token.
"""

from __future__ import annotations


class SwarmOAuthError(Exception):
    """Base of every error the SDK raises on purpose."""


class TokenError(SwarmOAuthError):
    """A presented token was rejected; ``description`` says why."""

    error = "invalid_token"
    status_code = 401

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class MalformedToken(TokenError):
    """Not a well-formed JWT, or a required claim is missing or of the wrong type."""


class InvalidTokenType(TokenError):
    """The header's ``typ`` is not ``at+jwt`` (RFC 9068 §2.1): e.g. an ID token."""


class InvalidAlgorithm(TokenError):
    """The header's ``alg`` is not allowed, or is not the algorithm of the key."""


class UnknownKey(TokenError):
    """No key with the token's ``kid`` is published by the issuer."""


class InvalidSignature(TokenError):
    """The signature does not verify with the issuer's key: tampered or forged."""


class ExpiredToken(TokenError):
    """``exp`` is in the past (beyond the leeway)."""


class ExcessiveLifetime(TokenError):
    """``exp - iat`` is longer than the verifier's ``max_lifetime``."""


class NotYetValid(TokenError):
    """``nbf`` or ``iat`` is in the future (beyond the leeway)."""


class InvalidIssuer(TokenError):
    """``iss`` is not the issuer this verifier trusts."""


class InvalidAudience(TokenError):
    """``aud`` does not name this service."""


class RevokedToken(TokenError):
    """The issuer revoked the token: by its ``jti``, or every token of its client issued
    up to an instant. Raised only by a verifier that checks revocations."""


class InsufficientScope(TokenError):
    """The token is valid but lacks a required scope (RFC 6750 §3.1: 403)."""

    error = "insufficient_scope"
    status_code = 403

    def __init__(self, description: str, required: frozenset[str]) -> None:
        super().__init__(description)
        self.required = required


class KeySetUnavailable(SwarmOAuthError):
    """The issuer's metadata or JWKS could not be fetched or used, and no keys are cached."""


class RevocationsUnavailable(SwarmOAuthError):
    """The verifier checks revocations but has no list it may trust: none could be fetched
    yet, or none for longer than its ``revocation_max_stale``. Not the caller's fault:
    glue answers 503, as the token server's own forward-auth does."""


class ConfigurationError(SwarmOAuthError, ValueError):
    """A setting (argument or environment variable) is missing or invalid."""


class IssuerConfigurationError(ConfigurationError):
    """The verifier's issuer does not work: its RFC 8414 metadata cannot be fetched, or
    names another issuer. The message says which URL and why; glue answers 500 and logs
    it, since neither the caller nor waiting will fix it."""


class TokenSourceError(SwarmOAuthError):
    """This service could not obtain its own access token."""


class SecretFileError(TokenSourceError):
    """The client-secret file did not appear in time, or is empty or unreadable."""


class TokenRequestError(TokenSourceError):
    """The token endpoint refused the request or could not be reached.

    ``status_code`` is ``None`` when no HTTP response arrived; ``error`` is the RFC 6749
    §5.2 code from the response body when there was one (e.g. ``invalid_client``);
    ``retry_after`` the seconds of the response's ``Retry-After``, if it had one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.retry_after = retry_after
