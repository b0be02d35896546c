"""``TokenSource``: this service's own access token, fetched, cached and refreshed.

A token is reused until about 80% of its lifetime has passed, then refreshed by one
caller while everyone else keeps using the still-valid current token. Only when there is
no usable token do callers wait, and then all of them wait for the same single request
(``SingleFlight``), whether they are threads, asyncio tasks, or both. A refresh that
fails while the current token is still valid is logged and retried a little later,
so a short outage of the token server does not reach the service's own callers.
"""

from __future__ import annotations

import base64
import copy
import functools
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import quote

import httpx

from swarm_oauth.sdk._flight import SingleFlight
from swarm_oauth.sdk._flow import (
    CA_BUNDLE_VARIABLE,
    REQUEST_FAILURES,
    Flow,
    Request,
    Runner,
    describe,
)
from swarm_oauth.sdk.errors import ConfigurationError, TokenRequestError, TokenSourceError
from swarm_oauth.sdk.secret_file import SecretFile

log = logging.getLogger("swarm_oauth.sdk")

AuthMethod = Literal["client_secret_basic", "client_secret_post"]
# RFC 6749 §5.1 only recommends expires_in; without it assume a short life and refresh soon.
DEFAULT_LIFETIME_SECONDS = 60.0
# Longer than any access token is meant to live: a larger expires_in (a server's way of
# saying "never expires") is taken as this.
MAX_LIFETIME_SECONDS = 10 * 365 * 86400.0
# With no valid token to fall back on, a failed request is answered again to every
# caller, without a request of its own, for a while that doubles with each failure in a
# row (half of it random, so that replicas spread out), from the first to the last:
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
# The longest a server's words are quoted in an error (and so in logs).
MAX_QUOTED = 200
# What the registrar sets for a managed service, two optional request settings, and the
# CA bundle of a token server that serves HTTPS with a private CA.
_ENVIRONMENT = {
    "client_id": "OAUTH_CLIENT_ID",
    "token_url": "OAUTH_TOKEN_URL",
    "client_secret_file": "OAUTH_CLIENT_SECRET_FILE",
    "scope": "OAUTH_SCOPE",
    "audience": "OAUTH_AUDIENCE",
    "ca_bundle": CA_BUNDLE_VARIABLE,
}


@dataclass(frozen=True, slots=True)
class CachedToken:
    """An access token and, on the source's clock, when it was asked for, when to refresh
    it and when it dies."""

    access_token: str
    requested_at: float
    refresh_at: float
    expires_at: float

    @classmethod
    def received(cls, access_token: str, lifetime: float, sent_at: float, ratio: float) -> Self:
        """A token whose lifetime is counted from when its request was sent (the safe side)."""
        return cls(access_token, sent_at, sent_at + lifetime * ratio, sent_at + lifetime)

    def __repr__(self) -> str:  # never print a bearer token by accident
        return f"CachedToken(refresh_at={self.refresh_at}, expires_at={self.expires_at})"


def parse_token_response(response: httpx.Response) -> tuple[str, float]:
    """The access token and its lifetime in seconds from a token endpoint's response."""
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json reads
        body = None
    if response.status_code != 200:
        error = body.get("error") if isinstance(body, dict) else None
        description = body.get("error_description") if isinstance(body, dict) else None
        detail = ": ".join(quoted(part) for part in (error, description) if part)
        raise TokenRequestError(
            f"token endpoint refused the request with HTTP {response.status_code}"
            + (f" ({detail})" if detail else ""),
            status_code=response.status_code,
            error=quoted(error) if isinstance(error, str) else None,
            retry_after=retry_after(response),
        )
    # A 200 whose body is no usable token: the server answered, so status_code says 200.
    unusable = functools.partial(TokenRequestError, status_code=response.status_code)
    if not isinstance(body, dict):
        raise unusable("token endpoint answered 200 without a JSON object")
    token, token_type = body.get("access_token"), body.get("token_type")
    if not isinstance(token, str) or not token:
        raise unusable("token response has no access_token")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise unusable(f"token response has token_type {quoted(repr(token_type))}, not Bearer")
    expires_in = body.get("expires_in", DEFAULT_LIFETIME_SECONDS)
    # Python's json reads NaN and Infinity (no lifetime), and integers float() cannot hold.
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not 0 < expires_in < math.inf
    ):
        raise unusable(f"token response has an invalid expires_in: {expires_in!r:.40}")
    return token, float(min(MAX_LIFETIME_SECONDS, expires_in))


def quoted(value: object) -> str:
    """A server's words as an error may quote them: one line, at most ``MAX_QUOTED``
    characters (a log line must not be forged, nor grow without bound)."""
    return _CONTROLS.sub(" ", str(value))[:MAX_QUOTED]


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when the server said it that way (RFC 9110 §10.2.3)."""
    value = response.headers.get("Retry-After", "").strip()
    # str.isdigit() also holds for digits int() does not read, such as "²".
    if not (value.isascii() and value.isdigit()):
        return None
    return float(min(int(value), BACKOFF_MAX_SECONDS))


def basic_credentials(client_id: str, client_secret: str) -> str:
    """The ``Authorization`` value for client_secret_basic (RFC 6749 §2.3.1 encodes first)."""
    pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


class TokenSource:
    """Gets, caches and refreshes this service's access token (client credentials grant)."""

    def __init__(
        self,
        client_id: str,
        token_url: str,
        *,
        client_secret_file: str | Path | None = None,
        client_secret: str | None = None,
        scope: str | Iterable[str] | None = None,
        audience: str | None = None,
        auth_method: AuthMethod = "client_secret_basic",
        secret_wait: float = 30.0,
        refresh_ratio: float = 0.8,
        retry_interval: float = 5.0,
        min_token_age: float = 10.0,
        timeout: float = 10.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        ca_bundle: str | Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure a source; nothing is read or fetched until the first ``token()``.

        Give exactly one of ``client_secret_file`` (re-read on every request, waited for
        up to ``secret_wait`` seconds) and ``client_secret``. ``http_client`` and
        ``async_http_client`` are used as given (TLS settings, proxies, event hooks);
        without them a short-lived client is made per request, which is cheap at one
        request per token lifetime. ``ca_bundle`` is a PEM file of the CAs an https
        ``token_url`` is checked against (default: the system's), for those short-lived
        clients (with one client of yours, for the other side's); yours bring their own.
        ``invalidate`` keeps a token younger than
        ``min_token_age`` seconds. ``clock`` (monotonic seconds) decides when a token is
        due for refresh; tests move it instead of sleeping.
        """
        if (client_secret_file is None) == (client_secret is None):
            raise ConfigurationError("give exactly one of client_secret_file and client_secret")
        if not client_id or not token_url:
            raise ConfigurationError("client_id and token_url are required")
        if not 0 < refresh_ratio <= 1:
            raise ConfigurationError(f"refresh_ratio must be in (0, 1], not {refresh_ratio}")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(f"unsupported auth_method {auth_method!r}")
        self.client_id = client_id
        self.token_url = token_url
        self.scope = scope if scope is None or isinstance(scope, str) else " ".join(scope)
        self.audience = audience
        self.auth_method = auth_method
        self.refresh_ratio = refresh_ratio
        self.retry_interval = retry_interval
        self.min_token_age = min_token_age
        self._secret_file = (
            SecretFile(client_secret_file, secret_wait) if client_secret_file is not None else None
        )
        self._static_secret = client_secret or ""  # used only when there is no file
        self._runner = Runner(timeout, http_client, async_http_client, ca_bundle)
        self._clock = clock
        self._flight: SingleFlight[CachedToken] = SingleFlight()
        self._lock = threading.Lock()
        self._cached: CachedToken | None = None
        self._retry_at = float("-inf")
        self._failed: TokenSourceError | None = None  # the last failure with no token left
        self._failures = 0  # in a row
        self._failed_until = float("-inf")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> TokenSource:
        """A source configured the way the registrar configures a managed service.

        Reads ``OAUTH_CLIENT_ID``, ``OAUTH_TOKEN_URL`` and ``OAUTH_CLIENT_SECRET_FILE``
        (required) and ``OAUTH_SCOPE``, ``OAUTH_AUDIENCE``, ``SWARM_OAUTH_CA_BUNDLE``
        (optional). Keyword ``options`` are passed to the constructor and win over the
        environment; ``SWARM_OAUTH_CA_BUNDLE`` is for the clients the source makes, so it
        is not read when you give your own ``http_client`` and ``async_http_client`` (with
        one of them, it is for the other side's).
        """
        env = os.environ if environ is None else environ
        settings: dict[str, Any] = {
            key: env[name] for key, name in _ENVIRONMENT.items() if env.get(name)
        }
        if all(options.get(name) is not None for name in ("http_client", "async_http_client")):
            settings.pop("ca_bundle", None)  # your own clients bring their own verify=
        settings.update(options)
        required = ["client_id", "token_url", "client_secret_file"]
        if settings.get("client_secret") is not None:  # an explicit secret replaces the file
            settings.pop("client_secret_file", None)
            required.remove("client_secret_file")
        missing = [_ENVIRONMENT[key] for key in required if not settings.get(key)]
        if missing:
            raise ConfigurationError(f"environment variable(s) not set: {', '.join(missing)}")
        return cls(**settings)

    def token(self) -> str:
        """A current access token, fetching one first if none is usable.

        With none usable, a request that just failed is not made again at once: until its
        backoff ends (1 s, doubling with each failure in a row up to 30 s, or the server's
        ``Retry-After``), callers get its error again, saying so.
        """
        if (token := self._usable()) is not None:
            return token
        self._raise_if_backing_off()
        return self._flight.run(lambda: self._runner.run(self._refreshing())).access_token

    async def atoken(self) -> str:
        """Like ``token`` for async code: waits without blocking the event loop."""
        if (token := self._usable()) is not None:
            return token
        self._raise_if_backing_off()
        cached = await self._flight.arun(lambda: self._runner.arun(self._refreshing()))
        return cached.access_token

    def _raise_if_backing_off(self) -> None:
        """The last failure again, while its backoff lasts."""
        failed, now = self._failed, self._clock()
        if failed is None or now >= self._failed_until:
            return
        again = copy.copy(failed)  # a new traceback each time, the attributes kept
        again.args = (f"{failed} (not asked again for {self._failed_until - now:.1f}s)",)
        raise again

    def invalidate(self, token: str | None = None) -> bool:
        """Forget the cached token (only if it is ``token``, when given): a 401 said it is bad.

        Passing the rejected token makes concurrent 401s for one token cost one refresh.
        A token younger than ``min_token_age`` is kept: a fresh one would most likely be
        refused as well (wrong audience, missing scope), so a service that keeps answering
        401 would otherwise cost a token request per call. Returns whether the next
        ``token()`` may differ from ``token``, i.e. whether a retry is worth it.
        """
        with self._lock:
            cached = self._cached
            if cached is None or token not in (None, cached.access_token):
                return True
            if self._clock() - cached.requested_at < self.min_token_age:
                return False
            self._cached = None
            self._retry_at = float("-inf")
            return True

    def _usable(self) -> str | None:
        """The cached token if a caller may take it now without waiting for a request."""
        cached, now = self._cached, self._clock()
        if cached is None or now >= cached.expires_at:
            return None
        if now < cached.refresh_at or self._flight.busy or now < self._retry_at:
            return cached.access_token
        return None

    def _fresh(self) -> CachedToken | None:
        """The cached token if it needs no refresh (another flight may just have ended)."""
        cached = self._cached
        return cached if cached is not None and self._clock() < cached.refresh_at else None

    def _fall_back(self, error: TokenSourceError) -> CachedToken:
        """After a failed refresh, the current token if it is still valid; else ``error``,
        which callers get again until its backoff ends."""
        cached, now = self._cached, self._clock()
        if cached is None or now >= cached.expires_at:
            with self._lock:
                self._failures += 1
                doublings = min(self._failures - 1, 16)  # the cap is reached long before
                backoff = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2**doublings)
                backoff *= random.uniform(0.5, 1.0)  # noqa: S311 (jitter, not a secret)
                asked = error.retry_after if isinstance(error, TokenRequestError) else None
                self._failed, self._failed_until = error, now + max(backoff, asked or 0.0)
            raise error
        self._retry_at = now + self.retry_interval
        log.warning(
            "token refresh for %s failed (%s); using the current token until it expires",
            self.client_id,
            error,
        )
        return cached

    def _refreshing(self) -> Flow[CachedToken]:
        """The token to use after a refresh: a new one, or the current one if it failed."""
        if (fresh := self._fresh()) is not None:
            return fresh  # another caller's refresh just ended
        sent_at = self._clock()
        try:
            secret = self._static_secret
            if self._secret_file is not None:
                # Waiting for a missing file is for a first token: with a valid one cached,
                # the refresh fails at once and the token serves until a retry finds it.
                cached = self._cached
                waits = cached is None or sent_at >= cached.expires_at
                secret = yield from self._secret_file.reading(None if waits else 0.0)
            headers, data = self._request(secret)
            try:
                response = yield Request("POST", self.token_url, headers, data)
            except REQUEST_FAILURES as error:
                raise TokenRequestError(
                    f"token endpoint {self.token_url} unreachable: {describe(error)}"
                ) from None
            return self._store(response, sent_at)
        except TokenSourceError as error:
            return self._fall_back(error)

    def _request(self, secret: str) -> tuple[dict[str, str], dict[str, str]]:
        """Headers and form of a client-credentials request (the secret goes in one of them)."""
        headers = {"Accept": "application/json"}
        data = {"grant_type": "client_credentials"}
        if self.scope:
            data["scope"] = self.scope
        if self.audience:
            data["audience"] = self.audience
        if self.auth_method == "client_secret_basic":
            headers["Authorization"] = basic_credentials(self.client_id, secret)
        else:
            data.update(client_id=self.client_id, client_secret=secret)
        return headers, data

    def _store(self, response: httpx.Response, sent_at: float) -> CachedToken:
        token, lifetime = parse_token_response(response)
        cached = CachedToken.received(token, lifetime, sent_at, self.refresh_ratio)
        with self._lock:
            self._cached = cached
            self._retry_at = float("-inf")
            self._failed, self._failures = None, 0
        return cached
