"""``VerifiedCache``: what a ``Verifier`` already proved about a token, kept for its life.

Verifying a signature is most of what a token costs, and a service sees the same token
over and over (each caller sends its own until it refreshes it), so the outcome of a
full verification is kept and a repeated token costs a hash and a lookup. The checks
that can change between two calls are made again on every call:

- the token's ``exp`` (plus the verifier's leeway) against the clock: a hit is never
  served past it;
- the scopes the call requires (``grant``).

What the issuer changes is told to the cache instead: once a refresh of the keys finds
the key that verified a token gone from the JWKS (or replaced), ``drop_keys`` forgets
its tokens, and they are verified again.

Issuer and audience are the verifier's own, fixed, so a cache belongs to one verifier.
Entries are keyed by the SHA-256 of the whole token as a request sends it, ``Bearer``,
a space and the token: a token is a bearer credential and is not kept in memory, no
other token can find its entry, and a request's ``Authorization`` value is looked up as
it arrived, without a copy of the token cut out of it first. The cache is bounded;
when full, the oldest entry goes first, which among tokens of one issuer (one lifetime)
is also the first to expire. ``drop_jti`` and ``drop_client`` are for a revocation
check to call: a revoked token's entry must not outlive the revocation. Whatever is
dropped, a verification under way when it was cannot bring it back (see ``put``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from hashlib import sha256
from typing import Any, NoReturn

from swarm_oauth.sdk.scopes import require_granted

DEFAULT_SIZE = 4096


class Claims(dict[str, Any]):
    """A token's verified claims: a ``dict`` that refuses changes, so that every call
    presenting the token can be handed the same one instead of a copy.

    It is still a ``dict`` for everything that reads (``json.dumps``, ``isinstance``);
    ``dict(claims)`` is a copy you may change, and so is what ``copy`` and ``pickle``
    make of it. Nested values (an ``aud`` list) are shared: treat them as read-only.
    """

    __slots__ = ()

    def _refuse(self) -> NoReturn:
        raise TypeError("verified claims are read-only; dict(claims) is a copy you may change")

    def __setitem__(self, key: str, value: Any) -> NoReturn:
        self._refuse()

    def __delitem__(self, key: str) -> NoReturn:
        self._refuse()

    # The ignore is typeshed's own on dict.__ior__: an in-place | is not the | of dict.
    def __ior__(self, other: Any) -> NoReturn:  # type: ignore[misc]
        self._refuse()

    def clear(self) -> NoReturn:
        self._refuse()

    def pop(self, key: str, default: Any = None) -> NoReturn:
        self._refuse()

    def popitem(self) -> NoReturn:
        self._refuse()

    def setdefault(self, key: str, default: Any = None) -> NoReturn:
        self._refuse()

    def update(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse()

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)


@dataclass(frozen=True, slots=True)
class Verified:
    """A token's verified claims and what a later call needs to trust them again.

    Slotted rather than a ``NamedTuple``: every cache hit reads three of its fields, and
    the interpreter reads a slot several times faster than a named tuple's field.
    """

    claims: Claims
    scopes: frozenset[str]
    valid_until: float  # exp + leeway, in time.time() seconds
    kid: str  # of the key that verified it

    def grant(self, scopes: str | Iterable[str]) -> Claims:
        """The claims if they grant ``scopes``; else ``InsufficientScope``."""
        require_granted(self.scopes, scopes)
        return self.claims


# RFC 6750 §2.1's spelling of the credentials, the form the cache's keys are hashed from.
SCHEME = b"Bearer "


def sent(token: str) -> bytes:
    """``token`` as a request's ``Authorization`` value carries it, the form a cache key
    is the hash of; any text has one (a lone surrogate as well, never in a real token)."""
    return SCHEME + token.encode("utf-8", "surrogatepass")


class VerifiedCache:
    """Verified tokens by the SHA-256 of the token, at most ``size`` of them (0: none)."""

    def __init__(self, size: int = DEFAULT_SIZE, clock: Callable[[], float] = time.time) -> None:
        """Keep up to ``size`` results; ``clock`` is the wall clock ``exp`` is read against."""
        self.size = size
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, Verified] = OrderedDict()
        self._drops = 0  # how many times entries were dropped on purpose, see ``put``

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str) -> Verified | None:
        """The verified result for ``token`` if it still holds; ``None`` means verify it
        in full."""
        return self.get_sent(sent(token))

    def get_sent(self, authorization: bytes) -> Verified | None:
        """Like ``get``, for the token of an ``Authorization`` header's value as sent:
        ``Bearer``, one space, the token. Any other spelling finds nothing."""
        if not self._entries:
            return None
        digest = sha256(authorization).digest()
        found = self._entries.get(digest)  # lock-free: a single dict read
        if found is None or self._clock() < found.valid_until:
            return found
        with self._lock:
            self._entries.pop(digest, None)
        return None

    @property
    def epoch(self) -> int:
        """Read before a full verification starts, and hand it to ``put``."""
        return self._drops

    def put(self, token: str, verified: Verified, epoch: int) -> None:
        """Remember ``verified`` for ``token``, evicting the oldest entry when full.

        Not if anything was dropped since ``epoch``: a verification that was under way
        when its token was revoked must not bring the token back into the cache.
        """
        if self.size <= 0:
            return
        with self._lock:
            if epoch != self._drops:
                return
            while len(self._entries) >= self.size:
                self._entries.popitem(last=False)
            self._entries[sha256(sent(token)).digest()] = verified

    def drop_jti(self, jti: str) -> int:
        """Forget the token with this ``jti`` (it was revoked); how many entries went."""
        return self.drop(lambda claims: claims.get("jti") == jti)

    def drop_client(self, client_id: str, issued_before: float) -> int:
        """Forget the tokens of ``client_id`` issued (``iat``) at or before
        ``issued_before``, as the token server revokes them; how many entries went."""
        return self.drop(
            lambda claims: (
                claims.get("client_id") == client_id and float(claims["iat"]) <= issued_before
            )
        )

    def drop_keys(self, kids: Collection[str]) -> int:
        """Forget the tokens verified with the keys ``kids`` (gone from the JWKS, or
        replaced); how many entries went."""
        return self._drop(lambda verified: verified.kid in kids)

    def clear(self) -> None:
        """Forget everything."""
        with self._lock:
            self._drops += 1
            self._entries.clear()

    def drop(self, matches: Callable[[Claims], bool]) -> int:
        """Forget the tokens whose claims ``matches`` (e.g. a new revocation list's
        ``revoked``); how many entries went."""
        return self._drop(lambda verified: matches(verified.claims))

    def _drop(self, matches: Callable[[Verified], bool]) -> int:
        with self._lock:
            self._drops += 1
            doomed = [digest for digest, v in self._entries.items() if matches(v)]
            for digest in doomed:
                del self._entries[digest]
        return len(doomed)
