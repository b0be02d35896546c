"""The issuer's public signing keys, cached so that verifying a token costs no request.

Why not PyJWT's ``PyJWKClient``: it fetches with blocking urllib (no async), and on an
unknown ``kid`` it refetches the JWKS every time, so anyone sending tokens with made-up
``kid`` values makes the verifier hit the issuer once per request. ``KeySet`` keeps
PyJWT for what it does well (``PyJWK`` parses and binds each key to its algorithm) and
adds the policy a service needs:

- one fetch in flight however many threads and tasks ask (``SingleFlight``);
- at most one fetch attempt per ``refetch_interval`` seconds, whatever triggers it: an
  unknown ``kid`` (a key published since the last fetch), the cache's ``max_age``, or a
  retry after a failure;
- keys older than ``max_age`` are still served while a refresh runs in the background
  (a thread, or a task on the caller's event loop), so no caller waits for it; only a
  caller that needs a key not cached waits for a fetch;
- when a refresh fails, the keys already cached stay in use; only a verifier that never
  got any keys reports ``KeySetUnavailable``.

The JWKS URL is discovered once from the issuer's RFC 8414 metadata unless given. If the
metadata cannot be had or names another issuer, the verifier's ``issuer`` is wrong (or
unreachable from here), which ``IssuerConfigurationError`` says with the URL and why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import jwt

from swarm_oauth.sdk._flight import Background, SingleFlight
from swarm_oauth.sdk._flow import REQUEST_FAILURES, Flow, Request, Runner, describe
from swarm_oauth.sdk.errors import IssuerConfigurationError, KeySetUnavailable, UnknownKey

log = logging.getLogger("swarm_oauth.sdk")

WELL_KNOWN_METADATA = "/.well-known/oauth-authorization-server"
# RFC 7518 §6.2, §6.3 and RFC 8037 §2: the key types that verify signatures publicly.
PUBLIC_KEY_TYPES = frozenset({"EC", "RSA", "OKP"})


def metadata_url(issuer: str) -> str:
    """Where RFC 8414 §3.1 puts the issuer's metadata: well-known suffix before the path."""
    parts = urlsplit(issuer)
    return urlunsplit(
        (parts.scheme, parts.netloc, WELL_KNOWN_METADATA + parts.path.rstrip("/"), "", "")
    )


def jwks_uri_from_metadata(metadata: Any, issuer: str) -> str:
    """The ``jwks_uri`` of metadata that really is ``issuer``'s (RFC 8414 §3.3)."""
    if not isinstance(metadata, dict):
        raise IssuerConfigurationError("it is not a JSON object")
    if metadata.get("issuer") != issuer:
        raise IssuerConfigurationError(
            f"it names issuer {metadata.get('issuer')!r}, not {issuer!r}"
        )
    uri = metadata.get("jwks_uri")
    if not isinstance(uri, str) or not uri:
        raise IssuerConfigurationError("it has no jwks_uri")
    # RFC 8414 §2: jwks_uri is https. An https issuer's keys over plain http would be
    # keys anyone on the path could replace.
    if issuer.lower().startswith("https:") and not uri.lower().startswith("https:"):
        raise IssuerConfigurationError(f"its jwks_uri {uri[:200]!r} is not https")
    return uri


class PublishedKey(jwt.PyJWK):
    """A JWKS key as PyJWT parses it, with the JWK it was parsed from."""

    def __init__(self, jwk: dict[str, Any]) -> None:
        """Parse ``jwk``; raises ``jwt.PyJWTError`` if it is not a usable key."""
        super().__init__(jwk)
        self.jwk = jwk


def parse_jwks(
    document: Any, previous: Mapping[str, PublishedKey] | None = None
) -> dict[str, PublishedKey]:
    """The usable signing keys of a JWKS document by ``kid``; others are skipped.

    Only public-key types count: a symmetric (``oct``) key in a JWKS is either a mistake
    or an attack (a token HMAC-signed with it while its header names another ``alg``),
    and it can never verify a third party's token, so it is never even parsed. Of keys
    sharing a ``kid``, the first usable one counts. A key unchanged from ``previous`` is
    that same object, so a key gone or replaced is told by identity.
    """
    previous = previous or {}
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise KeySetUnavailable("JWKS document has no 'keys' list")
    keys: dict[str, PublishedKey] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        kty = entry.get("kty")
        if not isinstance(kty, str) or kty not in PUBLIC_KEY_TYPES:
            log.warning("skipping JWKS key %r of type %r: not a public key", kid, kty)
            continue
        if kid in keys:
            # RFC 7517 §4.5: kids SHOULD be distinct. Which of two keys a token means is
            # unknowable, and the later one silently winning would hide the mistake.
            log.warning("skipping JWKS key %r: an earlier key has the same kid", kid)
            continue
        if (known := previous.get(kid)) is not None and known.jwk == entry:
            keys[kid] = known
            continue
        try:
            keys[kid] = PublishedKey(entry)
        # PyJWK raises more than its own errors for members of the wrong type or an
        # "alg" of "none" (TypeError, NotImplementedError); one bad entry spoils no other.
        except (jwt.PyJWTError, TypeError, ValueError, NotImplementedError) as error:
            log.warning("skipping unusable JWKS key %r: %s", kid, error)
    if not keys:
        raise KeySetUnavailable("JWKS has no usable signing keys")
    return keys


def _json_at(url: str) -> Flow[Any]:
    """The JSON document at ``url``, or ``KeySetUnavailable`` saying why there is none."""
    try:
        response = yield Request("GET", url)
    except REQUEST_FAILURES as error:
        raise KeySetUnavailable(describe(error)) from None
    if response.status_code != 200:
        raise KeySetUnavailable(f"answered HTTP {response.status_code}")
    try:
        return response.json()
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json reads
        raise KeySetUnavailable("answered with something other than JSON") from None


def _jwks_at(
    url: str, previous: Mapping[str, PublishedKey] | None
) -> Flow[dict[str, PublishedKey]]:
    try:
        return parse_jwks((yield from _json_at(url)), previous)
    except KeySetUnavailable as error:
        raise KeySetUnavailable(f"JWKS at {url}: {error}") from None


class KeySet:
    """An issuer's signing keys by ``kid``, fetched lazily and refreshed with throttling."""

    def __init__(
        self,
        issuer: str,
        jwks_url: str | None = None,
        *,
        refetch_interval: float = 5.0,
        max_age: float = 300.0,
        timeout: float = 5.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        ca_bundle: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[frozenset[str]], object] | None = None,
    ) -> None:
        """Configure; nothing is fetched until a key is first asked for. ``ca_bundle``: a
        PEM file of the CAs an https issuer is checked against (default: the system's).
        ``on_change`` is called, after a fetch, with the ``kid`` of every key that fetch
        found gone or replaced, for what was proved with those keys to be forgotten."""
        self.issuer = issuer
        self.jwks_url = jwks_url
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self._runner = Runner(timeout, http_client, async_http_client, ca_bundle)
        self._clock = clock
        self._on_change = on_change
        self._flight: SingleFlight[None] = SingleFlight()
        self._background = Background(self._flight, self._fetch, self._afetch, "jwks-refresh")
        # The keys as last fetched, by ``kid`` (``None`` before the first fetch); an
        # attribute rather than a property because every cached verification reads it.
        self.published: Mapping[str, PublishedKey] | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._failure: KeySetUnavailable | IssuerConfigurationError = KeySetUnavailable(
            "no fetch attempted yet"
        )

    def get(self, kid: str) -> jwt.PyJWK:
        """The key ``kid``, fetching the JWKS first if it is not cached (blocking)."""
        if self._must_fetch(kid):
            self._flight.run(self._fetch)
        else:
            self.refresh_if_due()
        return self._find(kid)

    async def aget(self, kid: str) -> jwt.PyJWK:
        """The key ``kid``, fetching the JWKS first if it is not cached (async)."""
        if self._must_fetch(kid):
            await self._flight.arun(self._afetch)
        else:
            self.arefresh_if_due()
        return self._find(kid)

    @property
    def refreshing(self) -> bool:
        """Whether a background refresh is under way."""
        return self._background.running

    def refresh_if_due(self) -> None:
        """Refresh keys older than ``max_age`` in a background thread; never waits."""
        if self._clock() - self._fetched_at >= self.max_age:  # decided without the lock
            self._background.start(self._attempt_allowed)

    def arefresh_if_due(self) -> None:
        """Like ``refresh_if_due`` in a task on the running event loop."""
        if self._clock() - self._fetched_at >= self.max_age:
            self._background.astart(self._attempt_allowed)

    def _must_fetch(self, kid: str) -> bool:
        """Whether the caller has to wait for a fetch: ``kid`` is not cached."""
        keys = self.published
        if keys is not None and kid in keys:
            return False
        # A fetch under way may bring this key; else try one if the throttle allows.
        return self._flight.busy or self._attempt_allowed()

    def _attempt_allowed(self) -> bool:
        return self._clock() - self._attempted_at >= self.refetch_interval

    def _find(self, kid: str) -> jwt.PyJWK:
        keys = self.published
        if keys is None:
            failure = self._failure  # a fresh error of the same kind, not a re-raise
            raise type(failure)(f"no signing keys for {self.issuer}: {failure}")
        key = keys.get(kid)
        if key is None:
            raise UnknownKey(f"no key with kid {kid[:64]!r} is published by the issuer")
        return key

    def _fetch(self) -> None:
        self._runner.run(self._fetching())

    async def _afetch(self) -> None:
        await self._runner.arun(self._fetching())

    def _fetching(self) -> Flow[None]:
        # Re-checked inside the flight: a caller may arrive just after a fetch completed.
        if not self._attempt_allowed():
            return
        self._attempted_at = self._clock()
        try:
            if self.jwks_url is None:
                self.jwks_url = yield from self._discovering()
            keys = yield from _jwks_at(self.jwks_url, self.published)
        except (KeySetUnavailable, IssuerConfigurationError) as error:
            self._failed(error)
            return
        self._loaded(keys)

    def _discovering(self) -> Flow[str]:
        """The JWKS URL from the issuer's metadata; without it, ``issuer`` must be wrong."""
        url = metadata_url(self.issuer)
        try:
            return jwks_uri_from_metadata((yield from _json_at(url)), self.issuer)
        except (KeySetUnavailable, IssuerConfigurationError) as error:
            raise IssuerConfigurationError(f"issuer metadata at {url}: {error}") from None

    def _loaded(self, keys: dict[str, PublishedKey]) -> None:
        # An unchanged key is the same object after a fetch (``_jwks_at`` keeps it).
        before = self.published or {}
        self.published = keys
        self._fetched_at = self._attempted_at
        log.info("loaded %d signing key(s) for %s", len(keys), self.issuer)
        gone = frozenset(kid for kid, key in before.items() if keys.get(kid) is not key)
        if gone and self._on_change is not None:
            self._on_change(gone)

    def _failed(self, error: KeySetUnavailable | IssuerConfigurationError) -> None:
        self._failure = error
        if isinstance(error, IssuerConfigurationError):
            log.error("cannot find the signing keys of %s: %s", self.issuer, error)
        elif self.published is not None:
            log.warning("JWKS refresh for %s failed; keeping cached keys: %s", self.issuer, error)
        else:
            log.warning("JWKS fetch for %s failed: %s", self.issuer, error)
