"""Key states and the lines logged as they change, for the timelines rotations make."""

from __future__ import annotations

from swarm_oauth.cli.keys import next_step
from swarm_oauth.keys.timeline import KeyEvent, key_events, key_states
from swarm_oauth.store import KeyRecord


def key(kid: str, activates_at: float, retires_at: float | None = None) -> KeyRecord:
    return KeyRecord(kid, "ES256", b"", "", 0.0, activates_at, retires_at, unpublish_at=None)


def test_a_pending_key_replaced_before_it_signed_is_retired_not_pending():
    # A rotation at 0 published B to sign from 300; a compromise at 10 rotated again with
    # no publish-ahead: C signs from 10, and A and B retire at 10, B never having signed.
    records = [key("A", -1000, 10), key("B", 300, 10), key("C", 10)]
    assert key_states(records, 20) == {"A": "retired", "B": "retired", "C": "signing"}
    assert next_step(records[1], "retired", 20) == "published"  # not "signs in 4m40s"
    assert key_states(records[:2], 5) == {"A": "signing", "B": "retired"}


def test_a_key_published_straight_into_signing_is_logged_as_signing():
    before = key_states([key("A", -1000)], 5)
    after = key_states([key("A", -1000, 10), key("C", 10)], 20)
    events = {event.kid: event for event in key_events(before, after)}
    assert events["C"].message == "signing key now signs tokens"
    assert events["A"].message == "signing key retired"
    assert KeyEvent("D", None, "pending").message == "signing key published"
