"""Access tokens: JWTs in the RFC 9068 profile, signed with the current key."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarm_oauth.keys import KeyRing, LoadedKey
from swarm_oauth.keys.keyring import UNPUBLISH_SLACK_SECONDS
from swarm_oauth.tokens.ids import token_ids
from swarm_oauth.tokens.jws import (
    OFF_LOOP_ALGS,
    Signer,
    claims_json,
    compact,
    header_segment,
    signer_for,
)

DEFAULT_LIFETIME_SECONDS = 900
# The longest lifetime ``serve --token-lifetime`` accepts (cli/options.py, which stays
# free of the server's packages, spells it out again): one day.
MAX_LIFETIME_SECONDS = 86400
# Clock skew allowed on ``exp``, ``nbf`` and ``iat`` wherever this server checks a token
# (forward-auth, introspection): the SDK's ``Verifier`` default.
VERIFY_LEEWAY_SECONDS = 30
# Clients (with their scopes and audiences) whose fixed claims are kept encoded.
MAX_ENCODED_CLIENTS = 4096


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
        # Per kid: the encoded header and the signature function, built on first use.
        self._signers: dict[str, tuple[str, Signer]] = {}
        # Per client, scopes and audiences: the claims JSON around the per-token ones.
        self._fixed: dict[tuple[str, tuple[str, ...], tuple[str, ...]], tuple[str, str]] = {}

    def _signer(self, key: LoadedKey) -> tuple[str, Signer]:
        signer = self._signers.get(key.kid)
        if signer is None:
            header = header_segment({"alg": key.alg, "kid": key.kid, "typ": "at+jwt"})
            signer = self._signers[key.kid] = (header, signer_for(key.private_key))
        return signer

    def signs_slowly(self, now: float) -> bool:
        """Whether the key that signs at ``now`` is slow enough (RSA) that a server should
        issue off its event loop."""
        key = self._keyring().signing_key(now)
        return key is not None and key.alg in OFF_LOOP_ALGS

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
        fixed = (client_id, tuple(scopes), tuple(audiences))
        encoded = self._fixed.get(fixed)
        if encoded is None:
            encoded = self._encode_fixed(*fixed)
        before, after = encoded
        # iat and exp are integers and a jti is base64url: nothing to escape.
        payload = f'{before}"iat":{issued_at},"exp":{expires_at},"jti":"{token_ids.next()}"{after}'
        header, sign = self._signer(key)
        token = compact(header, payload, sign)
        return IssuedToken(token, expires_at - issued_at, " ".join(scopes))

    def _encode_fixed(
        self, client_id: str, scopes: tuple[str, ...], audiences: tuple[str, ...]
    ) -> tuple[str, str]:
        """The claims JSON before and after ``iat``, ``exp`` and ``jti``, kept for the
        next token of the same client: encoding the claims was a tenth of a token's
        time in the issuer."""
        before = claims_json(
            {
                "iss": self.issuer,
                "sub": client_id,
                "client_id": client_id,
                "aud": audiences[0] if len(audiences) == 1 else list(audiences),
            }
        )
        scope = " ".join(scopes)
        after = ',"scope":' + claims_json(scope) if scope else ""
        if len(self._fixed) >= MAX_ENCODED_CLIENTS:
            self._fixed.clear()
        encoded = self._fixed[(client_id, scopes, audiences)] = (before[:-1] + ",", after + "}")
        return encoded
