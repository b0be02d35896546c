"""The revocation rules: what a revocation covers, how long it is kept, and how long the
token endpoint holds a client back after its cut-off."""

from __future__ import annotations

import pytest

from swarm_oauth.store import RevocationRecord
from swarm_oauth.tokens.issuer import MAX_LIFETIME_SECONDS, VERIFY_LEEWAY_SECONDS
from swarm_oauth.tokens.revocation import (
    MAX_ISSUE_DELAY_SECONDS,
    RevocationList,
    client_revocation,
    token_revocation,
)

NOW = 1_800_000_000.4


def test_a_token_revocation_covers_that_jti_only_until_the_token_is_past_any_leeway():
    record = token_revocation("svc", "jti-1", expires_at=NOW + 900)
    assert record.expires_at == NOW + 900 + VERIFY_LEEWAY_SECONDS
    revoked = RevocationList([record])
    assert revoked.revoked("svc", "jti-1", issued_at=NOW)
    assert not revoked.revoked("svc", "jti-2", issued_at=NOW)
    assert not RevocationList().revoked("svc", "jti-1", issued_at=NOW)


def test_a_client_cut_off_covers_its_tokens_issued_up_to_that_instant():
    record = client_revocation("svc", NOW)
    # Kept as long as the longest token may live: the writer does not know the lifetime.
    assert record.expires_at == NOW + MAX_LIFETIME_SECONDS + VERIFY_LEEWAY_SECONDS
    revoked = RevocationList([record])
    assert revoked.revoked("svc", "any", issued_at=NOW - 600)
    assert revoked.revoked("svc", "any", issued_at=int(NOW))  # iat has whole seconds
    assert not revoked.revoked("svc", "any", issued_at=int(NOW) + 1)
    assert not revoked.revoked("other", "any", issued_at=NOW - 600)


def test_two_cut_offs_of_one_client_merge_to_the_later():
    later = client_revocation("svc", NOW + 50)
    merged = RevocationList([later, client_revocation("svc", NOW)])
    assert merged.records == (later,)
    assert merged.revoked("svc", "any", issued_at=NOW + 40)
    grown = RevocationList([client_revocation("svc", NOW)]).with_record(later)
    assert grown.records == (later,)
    assert len(grown.with_record(token_revocation("svc", "j", NOW + 900))) == 2


@pytest.mark.parametrize(
    ("now", "delay"),
    [
        (NOW - 5, MAX_ISSUE_DELAY_SECONDS),  # a clock behind the writer's: capped
        (NOW, 0.6),  # the same second as the cut-off: wait for the next one
        (NOW + 0.5, 0.1),
        (NOW + 0.6, 0.0),  # the next second: iat is past the cut-off
        (NOW + 100, 0.0),
    ],
)
def test_the_token_endpoint_waits_for_the_second_after_a_cut_off(now, delay):
    revoked = RevocationList([client_revocation("svc", NOW)])
    assert revoked.issue_delay("svc", now) == pytest.approx(delay)
    assert revoked.issue_delay("other", now) == 0.0


def test_the_published_document_lists_both_kinds():
    records = [
        token_revocation("svc", "jti-1", NOW + 900),
        RevocationRecord("svc", NOW + 100, issued_before=NOW),
    ]
    assert RevocationList(records).document() == {
        "tokens": [{"jti": "jti-1", "client_id": "svc", "expires_at": records[0].expires_at}],
        "clients": [{"client_id": "svc", "issued_before": NOW, "expires_at": NOW + 100}],
    }
