"""The issuer's revocations, fetched and kept fresh for a ``Verifier`` that checks them.

The token server publishes the revocations in force at ``GET {issuer}/api/revocations``:
single tokens by ``jti``, and clients whose every token issued up to an instant
(``issued_before``) is revoked, each with the ``expires_at`` past which no token it covers
can still be valid. ``Revocations`` keeps a copy, refreshed with ``If-None-Match`` (a
``304`` keeps the list in hand), under these rules:

- While the issuer answers, no call uses a list older than ``refresh`` seconds, counted
  from when the request that brought it was sent. In the last second of that life the
  first call starts a refresh in the background (a thread, or a task on the caller's
  event loop; one at a time, ``SingleFlight``), so under steady traffic nobody waits; a
  call that finds the list older than ``refresh`` (the service was idle) waits for it.
- A failed refresh (no answer, a 503, any status but 200 and 304, a body that is not a
  revocation list) keeps the last list. It is logged once per outage and retried at most
  once per ``refresh`` seconds, in the background; calls go on with the last list.
- Once the last successful refresh is more than ``max_stale`` seconds old, or before the
  first, every call raises ``RevocationsUnavailable``: the verifier fails closed, as the
  token server's forward-auth does, because a caller who asked for revocation checks
  was promised that a revoked token stops within a bound, and accepting tokens on a list
  nobody can confirm would break that promise silently. ``max_stale`` is the outage a
  service rides out first (a token server's restart, say) instead of answering 503 at
  once; ``math.inf`` keeps the last list forever, a choice of availability over the bound.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from swarm_oauth.sdk._flight import Background, SingleFlight
from swarm_oauth.sdk._flow import REQUEST_FAILURES, Flow, Request, Runner, describe
from swarm_oauth.sdk.errors import ConfigurationError, RevocationsUnavailable

log = logging.getLogger("swarm_oauth.sdk")

PATH = "/api/revocations"
# How long before the list's ``refresh`` is up a call starts refreshing it in the background.
REFRESH_AHEAD_SECONDS = 1.0


def _number(entry: dict[str, Any], name: str) -> float:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} is {value!r}, not a number")
    return float(value)


def _name(entry: dict[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is {value!r}, not a non-empty string")
    return value


def _entries(document: dict[str, Any], name: str) -> list[dict[str, Any]]:
    entries = document.get(name)
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ValueError(f"{name!r} is not a list of objects")
    return entries


class RevocationList:
    """An immutable snapshot of the revocations in force: revoked ``jti`` values, and
    per client the instant up to which its tokens are revoked."""

    def __init__(
        self,
        tokens: Mapping[str, float] | None = None,
        clients: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """``tokens``: ``jti`` -> until when it is kept; ``clients``: ``client_id`` ->
        (``issued_before``, until when it is kept)."""
        self.tokens: Mapping[str, float] = dict(tokens or {})
        self.clients: Mapping[str, tuple[float, float]] = dict(clients or {})
        ends = [*self.tokens.values(), *(end for _, end in self.clients.values())]
        self._first_end = min(ends, default=math.inf)

    def __len__(self) -> int:
        return len(self.tokens) + len(self.clients)

    @classmethod
    def parse(cls, document: Any, now: float, keep: float = 0.0) -> RevocationList:
        """The list of a ``/api/revocations`` document without the entries that ended
        (``expires_at + keep`` before ``now``); ``ValueError`` if it is not one."""
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        tokens: dict[str, float] = {}
        for entry in _entries(document, "tokens"):
            jti, end = _name(entry, "jti"), _number(entry, "expires_at") + keep
            tokens[jti] = max(end, tokens.get(jti, end))
        clients: dict[str, tuple[float, float]] = {}
        for entry in _entries(document, "clients"):
            client_id = _name(entry, "client_id")
            cutoff, end = _number(entry, "issued_before"), _number(entry, "expires_at") + keep
            if (known := clients.get(client_id)) is not None:
                cutoff, end = max(cutoff, known[0]), max(end, known[1])
            clients[client_id] = (cutoff, end)
        return cls(tokens, clients).pruned(now)

    def pruned(self, now: float) -> RevocationList:
        """This list without the entries that ended before ``now`` (itself if none did)."""
        if now <= self._first_end:
            return self
        return RevocationList(
            {jti: end for jti, end in self.tokens.items() if end >= now},
            {client: entry for client, entry in self.clients.items() if entry[1] >= now},
        )

    def including(self, earlier: RevocationList, now: float) -> RevocationList:
        """This list with the entries of ``earlier`` it no longer has that have not ended
        by ``now``: the server stops listing an entry at its ``expires_at``, and a
        verifier whose leeway keeps a token valid longer must keep refusing it."""
        earlier = earlier.pruned(now)
        if not earlier:
            return self
        tokens = {**earlier.tokens}
        for jti, end in self.tokens.items():
            tokens[jti] = max(end, tokens.get(jti, end))
        clients = {**earlier.clients}
        for client_id, (cutoff, end) in self.clients.items():
            if (known := clients.get(client_id)) is not None:
                cutoff, end = max(cutoff, known[0]), max(end, known[1])
            clients[client_id] = (cutoff, end)
        return RevocationList(tokens, clients)

    def revoked(self, claims: Mapping[str, Any]) -> bool:
        """Whether the token with these (verified) claims is revoked: its ``jti`` is
        listed, or its ``client_id`` is, with ``iat`` at or before the cut-off."""
        jti = claims.get("jti")
        if isinstance(jti, str) and jti in self.tokens:
            return True
        client_id = claims.get("client_id")
        entry = self.clients.get(client_id) if isinstance(client_id, str) else None
        if entry is None:
            return False
        issued_at = claims.get("iat")
        # A listed client's token whose iat is not a number cannot be shown to be newer.
        return not isinstance(issued_at, int | float) or issued_at <= entry[0]


class Revocations:
    """The revocation list at ``url``, refreshed in the background; see the module."""

    def __init__(
        self,
        url: str,
        runner: Runner,
        *,
        refresh: float = 5.0,
        max_stale: float = 60.0,
        keep: float = 0.0,
        on_change: Callable[[RevocationList], None] = lambda _: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure; nothing is fetched until the list is first asked for.

        Entries are kept ``keep`` seconds past their ``expires_at`` (a verifier's leeway
        may accept a token longer than the server counted on). ``on_change`` is called
        with each new list once it is in use.
        """
        if not refresh > 0:
            raise ConfigurationError(f"revocation_refresh must be positive, not {refresh}")
        if not max_stale > refresh:
            raise ConfigurationError(
                f"revocation_max_stale ({max_stale}) must be longer than "
                f"revocation_refresh ({refresh})"
            )
        self.url = url
        self.refresh = refresh
        self.max_stale = max_stale
        self.keep = keep
        self._ahead = min(REFRESH_AHEAD_SECONDS, refresh / 2)
        self._runner = runner
        self._on_change = on_change
        self._clock = clock
        self._wall_clock = wall_clock
        self._flight: SingleFlight[None] = SingleFlight()
        self._background = Background(self._flight, self._fetch, self._afetch, "revocations")
        self._list: RevocationList | None = None
        self._etag: str | None = None
        self._loaded_at = -math.inf  # when the request of the last success was sent
        self._fresh_until = -math.inf  # until then the list is used without a second look
        self._attempted_at = -math.inf
        self._failure: str | None = None  # why the last attempt failed; None if it did not
        self._stale_logged = False

    def current(self) -> RevocationList:
        """The list to check tokens against now, waiting for a refresh when the one in hand
        is too old (blocking); ``RevocationsUnavailable`` when none may be trusted."""
        listed = self._list
        if listed is not None and self._clock() < self._fresh_until:
            return listed
        if self._must_wait():
            self._flight.run(self._fetch)
        else:
            self._background.start(self._attempt_allowed)
        return self._usable()

    async def acurrent(self) -> RevocationList:
        """Like ``current``, awaiting a refresh without blocking the event loop."""
        listed = self.ready()
        if listed is not None:
            return listed
        if self._must_wait():
            await self._flight.arun(self._afetch)
        return self._usable()

    def ready(self) -> RevocationList | None:
        """The list if it may be used at once (a refresh that is due is started in a task
        on the running event loop); ``None`` when a caller must wait or be refused."""
        listed = self._list
        if listed is not None and self._clock() < self._fresh_until:
            return listed
        if self._must_wait():
            return None
        self._background.astart(self._attempt_allowed)
        return self._trusted()

    @property
    def refreshing(self) -> bool:
        """Whether a background refresh is under way."""
        return self._background.running

    def _must_wait(self) -> bool:
        """Whether a caller has to wait for a refresh rather than use the list in hand."""
        if self._list is not None and (
            self._failure is not None or self._clock() - self._loaded_at < self.refresh
        ):
            return False  # the list in hand, refreshed in the background if it is due
        return self._flight.busy or self._attempt_allowed()

    def _attempt_allowed(self) -> bool:
        # After a failure, the issuer is asked again at most once per ``refresh``.
        return self._failure is None or self._clock() - self._attempted_at >= self.refresh

    def _trusted(self) -> RevocationList | None:
        listed = self._list
        if listed is None or self._clock() - self._loaded_at > self.max_stale:
            return None
        return listed

    def _usable(self) -> RevocationList:
        listed = self._trusted()
        if listed is not None:
            return listed
        if self._list is None:
            raise RevocationsUnavailable(
                f"no revocation list from {self.url} yet: {self._failure or 'not fetched'}"
            )
        age = self._clock() - self._loaded_at
        message = (
            f"the revocation list from {self.url} was last refreshed {age:.0f}s ago, more "
            f"than revocation_max_stale ({self.max_stale:g}s): {self._failure}"
        )
        if not self._stale_logged:
            self._stale_logged = True
            log.error("%s; refusing every token until it is refreshed", message)
        raise RevocationsUnavailable(message)

    def _fetch(self) -> None:
        self._runner.run(self._fetching())

    async def _afetch(self) -> None:
        await self._runner.arun(self._fetching())

    def _fetching(self) -> Flow[None]:
        # Re-checked inside the flight: a caller may arrive just after a refresh ended.
        listed = self._list
        if listed is not None and self._clock() < self._fresh_until:
            return
        if not self._attempt_allowed():
            return
        sent_at = self._attempted_at = self._clock()
        etag = self._etag if listed is not None else None
        try:
            response = yield Request("GET", self.url, {"If-None-Match": etag} if etag else None)
        except REQUEST_FAILURES as error:
            self._failed(describe(error))
            return
        if response.status_code == 304 and listed is not None:
            self._loaded(listed.pruned(self._wall_clock()), etag, sent_at)
            return
        if response.status_code != 200:
            self._failed(f"answered HTTP {response.status_code}")
            return
        try:
            now = self._wall_clock()
            fetched = RevocationList.parse(response.json(), now, self.keep)
        except (ValueError, RecursionError) as error:  # a JSON decoding error is one too
            self._failed(f"not a revocation list: {type(error).__name__}: {error}"[:300])
            return
        if listed is not None:
            fetched = fetched.including(listed, now)
        etag = response.headers.get("etag")
        # Sent back in If-None-Match, which httpx encodes as ASCII: an entity tag with
        # obs-text (RFC 9110 allows it) would make every later refresh fail to be sent.
        if etag is not None and not (etag.isascii() and etag.isprintable()):
            etag = None
        self._loaded(fetched, etag, sent_at)
        self._on_change(fetched)  # once it is in use, so nothing checked later misses it

    def _loaded(self, listed: RevocationList, etag: str | None, sent_at: float) -> None:
        if self._failure is not None and self._list is not None:
            log.info("revocation list from %s refreshed again", self.url)
        self._list, self._etag, self._loaded_at = listed, etag, sent_at
        self._fresh_until = sent_at + self.refresh - self._ahead
        self._failure, self._stale_logged = None, False

    def _failed(self, reason: str) -> None:
        if self._failure is None:  # once per outage
            if self._list is None:
                log.warning("cannot fetch the revocation list from %s: %s", self.url, reason)
            else:
                log.warning(
                    "cannot refresh the revocation list from %s (%s); using the last one "
                    "for up to %gs after it was fetched",
                    self.url,
                    reason,
                    self.max_stale,
                )
        self._failure = reason
