"""Automatic key rotation: every process that signs checks, on a thread of its own, whether
the current key has signed for longer than the rotation interval, and if so makes the same
rotation as ``swarm-oauth keys rotate``.

Nothing is coordinated between processes beyond the store: each one computes when the next
rotation falls due from the key records alone, so all of them wake at the same moment, and
the store's write lock lets exactly one of them rotate (``rotate_keys_if_due``); the others
find the new key on their next look and go back to sleep until the one after.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from swarm_oauth.keys.keyring import (
    UNPUBLISH_MARGIN_SECONDS,
    new_key_record,
    rotation_due,
    rotation_due_at,
    unpublish_at_for,
)
from swarm_oauth.keys.master import MasterKey
from swarm_oauth.store import KeyRecord, Store, StoreError

log = logging.getLogger("swarm_oauth.keys")

DEFAULT_ROTATION_INTERVAL_SECONDS = 30 * 86400
# Longer than any cache of the JWKS that verifiers keep by default, so each of them has
# refetched the JWKS between a key's publication and its first token: the SDK's KeySet
# and PyJWT's PyJWKClient both keep it 300 s, an HTTP cache in front may add the 60 s of
# our Cache-Control. docs/server.md ("How long ahead") gives the reasoning.
DEFAULT_PUBLISH_AHEAD_SECONDS = 600
# The longest a rotator sleeps between looks at the store: a key added or withdrawn by
# hand can move the next rotation earlier, and the wall clock can jump.
MAX_SLEEP_SECONDS = 60.0
# The shortest: at the boundary, rounding may make ``rotation_due`` say "not yet" while
# ``rotation_due_at`` says "now"; this keeps that instant from becoming a busy loop.
MIN_SLEEP_SECONDS = 0.05
# After a failure (store unreachable) the next attempt comes this much later.
RETRY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When keys rotate and what the new ones look like."""

    interval: float
    publish_ahead: float
    alg: str
    issuer: str
    token_lifetime: float
    unpublish_margin: float = UNPUBLISH_MARGIN_SECONDS


def rotate_keys_if_due(
    store: Store, master: MasterKey, policy: RotationPolicy, now: float
) -> KeyRecord | None:
    """What ``keys rotate`` does, but only when a rotation is due (``rotation_due``);
    the new key, or None if none was due.

    The store decides under its write lock, so when several processes find the same
    rotation due at once, exactly one of them makes it.
    """
    record = new_key_record(master, policy.alg, policy.issuer, now, now + policy.publish_ahead)
    retired = store.rotate_keys(
        record,
        unpublish_at_for(record, policy.token_lifetime, policy.unpublish_margin),
        unless_activated_after=now - policy.interval,
    )
    return None if retired is None else record


class KeyRotator:
    """Rotates the signing key whenever ``policy.interval`` says it is due."""

    def __init__(self, store: Store, master: MasterKey, policy: RotationPolicy) -> None:
        self._store = store
        self._master = master
        self.policy = policy
        self._failing = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="key-rotator", daemon=True)

    def check(self, now: float) -> float:
        """Rotate if a rotation is due at ``now``; the seconds until the next look."""
        records = self._store.list_keys()
        if rotation_due(records, now, self.policy.interval):
            record = rotate_keys_if_due(self._store, self._master, self.policy, now)
            if record is not None:
                log.info(
                    "rotated the signing key",
                    extra={"kid": record.kid, "alg": record.alg, "signs_from": record.activates_at},
                )
            # Won or lost the race: either way the new key is in the store; look again.
            return 0.0
        wait = rotation_due_at(records, now, self.policy.interval) - now
        return min(max(wait, MIN_SLEEP_SECONDS), MAX_SLEEP_SECONDS)

    def start(self) -> None:
        """Start checking on a daemon thread."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.check(time.time())
                if self._failing:
                    log.info("key rotation checks work again")
                    self._failing = False
            except StoreError as exc:
                wait = self._failed("key rotation check failed: store unreachable", exc)
            except Exception as exc:  # a bug must not silently end automatic rotation
                wait = self._failed("key rotation check failed", exc, exc_info=True)
            self._stop.wait(wait)

    def _failed(self, message: str, exc: Exception, *, exc_info: bool = False) -> float:
        if not self._failing:
            log.error(message, extra={"error": f"{type(exc).__name__}: {exc}"}, exc_info=exc_info)
            self._failing = True
        return RETRY_SECONDS

    def close(self) -> None:
        """Stop; a rotation under way finishes first."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(RETRY_SECONDS)
