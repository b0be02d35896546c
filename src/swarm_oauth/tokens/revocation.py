"""Revoked access tokens: which tokens no longer count, and how long that is remembered.

Two kinds of revocation, both kept in the store and followed by every process through its
change log, like client changes:
- one token, by its ``jti`` (RFC 7009: a client revoking a token of its own), kept until
  that token has expired;
- every token of a client issued up to an instant (the admin API, for a leaked secret),
  kept until every token issued by then has expired, whatever lifetime it was given.

``iat`` has whole seconds, so "issued up to instant T" covers every ``iat`` <= T; a token
issued later in the same second would be covered too. The token endpoint therefore holds
a request of that client back until the next second (``issue_delay``): a fresh token is
never born revoked.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from swarm_oauth.clients import ClientNotFound, validate_client_id
from swarm_oauth.store import ClientRecord, RevocationRecord, Store
from swarm_oauth.tokens.grant import OAuthError
from swarm_oauth.tokens.issuer import MAX_LIFETIME_SECONDS, VERIFY_LEEWAY_SECONDS

if TYPE_CHECKING:  # verify.py imports this module
    from swarm_oauth.tokens.verify import VerifiedToken

# Beside the other admin writes: a revocation after a leak belongs in the same trail.
log = logging.getLogger("swarm_oauth.clients")

# How long the token endpoint may hold a request back after its client's cut-off; more
# than a second only when the clocks of the processes differ.
MAX_ISSUE_DELAY_SECONDS = 2.0


def token_revocation(client_id: str, jti: str, expires_at: float) -> RevocationRecord:
    """Revoke one token, remembered until no verifier would accept it anyway."""
    return RevocationRecord(client_id, expires_at + VERIFY_LEEWAY_SECONDS, jti=jti)


def client_revocation(client_id: str, now: float) -> RevocationRecord:
    """Revoke every token of ``client_id`` issued up to ``now``.

    It is kept for the longest lifetime any token may have had: the clients role, which
    writes it, does not know the lifetime the tokens role issues with.
    """
    return RevocationRecord(
        client_id,
        now + MAX_LIFETIME_SECONDS + VERIFY_LEEWAY_SECONDS,
        issued_before=now,
    )


def revoke_own_token(store: Store, token: VerifiedToken, caller: ClientRecord) -> RevocationRecord:
    """Revoke ``token`` for the client it was issued to (RFC 7009 §2.1: no other client
    may revoke it)."""
    if token.client_id != caller.client_id:
        raise OAuthError("unauthorized_client", "the token was not issued to this client")
    record = token_revocation(token.client_id, token.jti, token.expires_at)
    store.add_revocation(record, time.time())
    log.info("token revoked", extra={"client_id": token.client_id, "jti": token.jti})
    return record


def revoke_client_tokens(store: Store, client_id: object, now: float) -> RevocationRecord:
    """Revoke every token issued so far to a registered client; ``ClientNotFound`` when
    there is no such client."""
    client_id = validate_client_id(client_id)
    if store.get_client(client_id) is None:
        raise ClientNotFound(client_id)
    record = client_revocation(client_id, now)
    store.add_revocation(record, now)
    log.info("client tokens revoked", extra={"client_id": client_id, "issued_before": now})
    return record


class RevocationList:
    """An immutable snapshot of the revocations in force; replaced whole when they change."""

    def __init__(self, records: Iterable[RevocationRecord] = ()) -> None:
        merged: dict[str, RevocationRecord] = {}
        for record in records:
            known = merged.get(record.key)
            merged[record.key] = record if known is None else _later(known, record)
        self.records = tuple(merged[key] for key in sorted(merged))
        self._jtis = frozenset(r.jti for r in self.records if r.jti is not None)
        self._cutoffs = {
            r.client_id: r.issued_before for r in self.records if r.issued_before is not None
        }

    def __len__(self) -> int:
        return len(self.records)

    def with_record(self, record: RevocationRecord) -> RevocationList:
        """This list and ``record``: what a process applies at once to its own revocation,
        before the change log brings it back."""
        return self.with_records((record,))

    def with_records(self, records: Iterable[RevocationRecord]) -> RevocationList:
        """This list and ``records`` (itself when there are none)."""
        added = tuple(records)
        return RevocationList((*self.records, *added)) if added else self

    def revoked(self, client_id: str, jti: str, issued_at: float) -> bool:
        """Whether the token with these claims is revoked."""
        if jti in self._jtis:
            return True
        cutoff = self._cutoffs.get(client_id)
        return cutoff is not None and issued_at <= cutoff

    def issue_delay(self, client_id: str, now: float) -> float:
        """Seconds to wait before a token issued to ``client_id`` at ``now`` would not be
        covered by its cut-off (0 almost always)."""
        cutoff = self._cutoffs.get(client_id)
        if cutoff is None or math.floor(now) > cutoff:
            return 0.0
        return min(math.floor(cutoff) + 1 - now, MAX_ISSUE_DELAY_SECONDS)

    def document(self) -> dict[str, Any]:
        """The list as verifiers outside the server fetch it (``GET /api/revocations``)."""
        return {
            "tokens": [
                {"jti": r.jti, "client_id": r.client_id, "expires_at": r.expires_at}
                for r in self.records
                if r.jti is not None
            ],
            "clients": [
                {
                    "client_id": r.client_id,
                    "issued_before": r.issued_before,
                    "expires_at": r.expires_at,
                }
                for r in self.records
                if r.issued_before is not None
            ],
        }


def _later(a: RevocationRecord, b: RevocationRecord) -> RevocationRecord:
    """Two revocations of one key as one, as the store merges them."""
    cutoffs = [c for c in (a.issued_before, b.issued_before) if c is not None]
    return RevocationRecord(
        a.client_id,
        max(a.expires_at, b.expires_at),
        jti=a.jti,
        issued_before=max(cutoffs) if cutoffs else None,
    )
