"""When an automatic key rotation falls due, from the key records alone."""

from __future__ import annotations

from swarm_oauth.keys.keyring import rotation_due, rotation_due_at
from swarm_oauth.store import KeyRecord

DAY = 86_400.0


def key(activates_at: float, retires_at: float | None = None) -> KeyRecord:
    return KeyRecord(
        kid=f"k{activates_at}",
        alg="ES256",
        private_key_encrypted=b"",
        certificate_pem="",
        created_at=activates_at,
        activates_at=activates_at,
        retires_at=retires_at,
        unpublish_at=None if retires_at is None else retires_at + 1_000,
    )


def test_due_once_the_signing_key_has_signed_for_the_interval():
    keys = [key(0)]
    assert rotation_due_at(keys, 10, 30 * DAY) == 30 * DAY
    assert not rotation_due(keys, 30 * DAY - 1, 30 * DAY)
    assert rotation_due(keys, 30 * DAY, 30 * DAY)


def test_a_key_published_ahead_counts_from_when_it_starts_signing():
    # A rotation at 30 d published a key that signs from 30 d + 10 m; the old key retires then.
    old, new = key(0, retires_at=30 * DAY + 600), key(30 * DAY + 600)
    assert not rotation_due([old, new], 30 * DAY + 1, 30 * DAY)
    assert rotation_due_at([old, new], 30 * DAY + 1, 30 * DAY) == 60 * DAY + 600


def test_retired_keys_do_not_count():
    # The newest key was withdrawn by hand: the one still signing decides.
    kept, withdrawn = key(0), key(20 * DAY, retires_at=21 * DAY)
    assert rotation_due_at([kept, withdrawn], 22 * DAY, 30 * DAY) == 30 * DAY
    assert rotation_due([kept, withdrawn], 31 * DAY, 30 * DAY)


def test_due_at_once_when_no_key_signs_now_or_later():
    gone = key(0, retires_at=5)
    assert rotation_due([gone], 10, 30 * DAY)
    assert rotation_due([], 10, 30 * DAY)
    assert rotation_due_at([gone], 10, 30 * DAY) == 10
