"""Where each published key stands at an instant, and what changed between two instants.

``keys list`` prints these states; every token process logs the changes as they happen
(a key published, signing, retired, gone from the JWKS), since activation and
retirement are timestamps that pass without any write to the store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from swarm_oauth.store import KeyRecord
from swarm_oauth.timestamps import iso8601

log = logging.getLogger("swarm_oauth.keys")

KeyState = Literal["pending", "signing", "standby", "retired"]
"""pending: published, signs later; signing: the key tokens are signed with now;
standby: could sign, but a newer key does; retired: no longer signs (or, replaced while
it waited, never will), still published so that the tokens it signed validate."""


def signing_record(records: Iterable[KeyRecord], now: float) -> KeyRecord | None:
    """The key that signs at ``now``: the newest (by activation) of those that may."""
    able = [record for record in records if record.signs_at(now)]
    return max(able, key=lambda record: record.activates_at) if able else None


def key_states(records: Iterable[KeyRecord], now: float) -> dict[str, KeyState]:
    """The state of every key published at ``now``, by kid."""
    published = [record for record in records if record.published_at(now)]
    signing = signing_record(published, now)
    states: dict[str, KeyState] = {}
    for record in published:
        if signing is not None and record.kid == signing.kid:
            states[record.kid] = "signing"
        elif record.activates_at > now and not _superseded(record):
            states[record.kid] = "pending"
        elif record.signs_at(now):
            states[record.kid] = "standby"
        else:
            states[record.kid] = "retired"
    return states


def _superseded(record: KeyRecord) -> bool:
    # Retired before it ever signed: a later rotation replaced it while it waited.
    return record.retires_at is not None and record.retires_at <= record.activates_at


@dataclass(frozen=True, slots=True)
class KeyEvent:
    """One key's change of state; ``state`` None means it left the JWKS."""

    kid: str
    before: KeyState | None
    state: KeyState | None

    @property
    def message(self) -> str:
        """What happened, as the log says it."""
        if self.before is None and self.state == "signing":
            # Published straight into signing (a rotation without --publish-ahead): what
            # an operator looks for is when it began to sign.
            return "signing key now signs tokens"
        if self.before is None:
            return "signing key published"
        if self.state is None:
            return "signing key removed from the JWKS"
        return {
            "signing": "signing key now signs tokens",
            "retired": "signing key retired",
            "standby": "signing key no longer the newest",
            "pending": "signing key scheduled",
        }[self.state]


def key_events(before: Mapping[str, KeyState], after: Mapping[str, KeyState]) -> list[KeyEvent]:
    """The changes from one set of states to the next, kids in a stable order."""
    return [
        KeyEvent(kid, before.get(kid), after.get(kid))
        for kid in sorted(set(before) | set(after))
        if before.get(kid) != after.get(kid)
    ]


class KeyTimeline:
    """Remembers the last states seen and logs each change (and the start)."""

    def __init__(self) -> None:
        self._states: dict[str, KeyState] | None = None

    def observe(self, records: Iterable[KeyRecord], now: float) -> None:
        """Log what changed since the last call; the first call logs the starting keys."""
        records = list(records)
        states = key_states(records, now)
        by_kid = {record.kid: record for record in records}
        if self._states is None:
            signing = [kid for kid, state in states.items() if state == "signing"]
            log.info(
                "signing keys loaded",
                extra={"signing_kid": signing[0] if signing else None, "keys": states},
            )
        else:
            for event in key_events(self._states, states):
                record = by_kid.get(event.kid)
                extra: dict[str, object] = {"kid": event.kid, "state": event.state}
                if event.before is not None:
                    extra["previous_state"] = event.before
                if record is not None:
                    extra["alg"] = record.alg
                    extra["activates_at"] = iso8601(record.activates_at)
                    if record.retires_at is not None:
                        extra["retires_at"] = iso8601(record.retires_at)
                    if record.unpublish_at is not None:
                        extra["unpublish_at"] = iso8601(record.unpublish_at)
                log.info(event.message, extra=extra)
        self._states = states
