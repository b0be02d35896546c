"""The published signing keys, decrypted, and their lifecycle in the store.

A key is created, published, signs, retires and is unpublished by timestamps alone, so
every process sharing the store agrees on which key signs at any instant without talking
to the others.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swarm_oauth.keys.master import MasterKey, MasterKeyError
from swarm_oauth.keys.material import (
    PrivateKey,
    b64url,
    load_private_key_der,
    new_key,
    private_key_der,
    public_jwk,
)
from swarm_oauth.store import KeyRecord, Store

log = logging.getLogger("swarm_oauth.keys")

# How long a retired key stays in the JWKS beyond the longest token it may have signed,
# to cover clock skew and verifiers' leeway (the default; operators may shorten it).
UNPUBLISH_MARGIN_SECONDS = 300
# The issuer ends every token at least this long before its key leaves the JWKS, for clock
# skew between the token server and verifiers; so no margin may be shorter.
UNPUBLISH_SLACK_SECONDS = 60


@dataclass(frozen=True, slots=True)
class LoadedKey:
    """A key ready to sign, with its public JWK (``kid``, ``alg``, ``use``, ``x5c``)."""

    record: KeyRecord
    private_key: PrivateKey
    jwk: dict[str, Any]

    @property
    def kid(self) -> str:
        return self.record.kid

    @property
    def alg(self) -> str:
        return self.record.alg

    def signs_at(self, now: float) -> bool:
        """Whether this key may sign at ``now``."""
        return self.record.signs_at(now)

    def published_at(self, now: float) -> bool:
        """Whether this key belongs in the JWKS at ``now``."""
        return self.record.published_at(now)


def load_key(record: KeyRecord, master: MasterKey) -> LoadedKey:
    """Decrypt a stored key and build its public JWK with the certificate chain."""
    private_key = load_private_key_der(
        master.decrypt(record.private_key_encrypted, record.kid.encode())
    )
    cert_der = x509.load_pem_x509_certificate(record.certificate_pem.encode()).public_bytes(
        serialization.Encoding.DER
    )
    jwk = {
        **public_jwk(private_key.public_key()),
        "kid": record.kid,
        "alg": record.alg,
        "use": "sig",
        "x5c": [base64.b64encode(cert_der).decode()],
        "x5t#S256": b64url(hashlib.sha256(cert_der).digest()),
    }
    return LoadedKey(record, private_key, jwk)


def check_master_key(store: Store, master: MasterKey) -> None:
    """Raise ``MasterKeyError`` unless ``master`` opens every published key: a command
    that adds a key must not encrypt it under a key the servers do not have."""
    for record in store.list_keys():
        load_key(record, master)


class KeyRing:
    """An immutable snapshot of the keys in the store; replaced whole when they change."""

    def __init__(self, keys: Sequence[LoadedKey] = ()) -> None:
        self.keys = tuple(sorted(keys, key=lambda k: k.record.activates_at))

    @classmethod
    def load(cls, store: Store, master: MasterKey) -> KeyRing:
        """Read and decrypt every published key; one that does not open is left out
        (and logged), so the others keep working."""
        loaded = []
        for record in store.list_keys():
            try:
                loaded.append(load_key(record, master))
            except (MasterKeyError, ValueError) as exc:
                log.error("leaving out a signing key that cannot be loaded",
                          extra={"kid": record.kid, "error": str(exc)})  # fmt: skip
        return cls(loaded)

    def algorithms(self, now: float) -> list[str]:
        """The algorithms of the published keys, without repeats."""
        return list(dict.fromkeys(k.alg for k in self.keys if k.published_at(now)))

    def signing_key(self, now: float) -> LoadedKey | None:
        """The newest key that may sign at ``now``."""
        for key in reversed(self.keys):
            if key.signs_at(now):
                return key
        return None

    def jwks(self, now: float) -> dict[str, Any]:
        """The JWK Set (RFC 7517) of the keys published at ``now``."""
        return {"keys": [k.jwk for k in self.keys if k.published_at(now)]}

    def certificates_pem(self, now: float) -> str:
        """The PEM certificates of the published keys, the signing one first."""
        signing = self.signing_key(now)
        ordered = sorted(
            (k for k in self.keys if k.published_at(now)), key=lambda k: k is not signing
        )
        return "".join(k.record.certificate_pem for k in ordered)


def new_key_record(
    master: MasterKey, alg: str, issuer: str, now: float, activates_at: float
) -> KeyRecord:
    """A fresh key for ``alg``, encrypted with ``master``, that signs from ``activates_at``."""
    material = new_key(alg, issuer)
    return KeyRecord(
        kid=material.kid,
        alg=alg,
        private_key_encrypted=master.encrypt(
            private_key_der(material.private_key), material.kid.encode()
        ),
        certificate_pem=material.certificate_pem,
        created_at=now,
        activates_at=activates_at,
    )


def ensure_signing_key(store: Store, master: MasterKey, alg: str, issuer: str, now: float) -> bool:
    """Create a key that signs from now on, unless one signs or is due to. True if created.

    The store decides under a lock, so replicas starting together create exactly one.
    """
    return store.add_key(new_key_record(master, alg, issuer, now, now), only_if_no_active=True)


def rotate_keys(
    store: Store,
    master: MasterKey,
    *,
    alg: str,
    issuer: str,
    now: float,
    publish_ahead: float,
    token_lifetime: float,
    unpublish_margin: float = UNPUBLISH_MARGIN_SECONDS,
) -> KeyRecord:
    """Add a key that signs after ``publish_ahead`` seconds and retire the current ones then.

    Verifiers see the new key in the JWKS before any token carries its kid; the retired
    keys stay published until every token they signed has expired, plus
    ``unpublish_margin``.
    """
    record = new_key_record(master, alg, issuer, now, now + publish_ahead)
    store.rotate_keys(record, unpublish_at_for(record, token_lifetime, unpublish_margin))
    return record


def rotation_due(records: Iterable[KeyRecord], now: float, interval: float) -> bool:
    """Whether an automatic rotation is due at ``now``: no key that still signs, or will,
    began signing (or begins) later than ``interval`` seconds ago.

    The same test as ``Store.rotate_keys(unless_activated_after=now - interval)`` makes.
    """
    threshold = now - interval
    return not any(r.activates_at > threshold for r in records if _not_retired(r, now))


def rotation_due_at(records: Iterable[KeyRecord], now: float, interval: float) -> float:
    """When the next automatic rotation falls due: ``interval`` after the newest key that
    signs now or will starts signing; ``now`` when no key signs now or will."""
    starts = [r.activates_at for r in records if _not_retired(r, now)]
    return max(starts) + interval if starts else now


def _not_retired(record: KeyRecord, now: float) -> bool:
    return record.retires_at is None or record.retires_at > now


def unpublish_at_for(record: KeyRecord, token_lifetime: float, margin: float) -> float:
    """When the keys that ``record`` replaces leave the JWKS: they sign until it
    activates, and their last tokens expire a lifetime later; then ``margin``."""
    return record.activates_at + token_lifetime + margin


class UnknownKey(LookupError):
    """No published key has this kid."""


class LastSigningKey(ValueError):
    """Retiring this key would leave no key to sign with, now or later; the message says
    what to do."""


def first_gap(records: Iterable[KeyRecord], now: float) -> float | None:
    """The first instant from ``now`` on at which none of ``records`` signs, or None."""
    covered = now
    for record in sorted(records, key=lambda r: r.activates_at):
        if record.activates_at > covered:
            break
        ends = math.inf if record.retires_at is None else record.retires_at
        covered = max(covered, ends)
    return None if covered == math.inf else covered


def retire_key(store: Store, kid: str, now: float, *, force: bool = False) -> list[str]:
    """Stop a key signing and withdraw it from the JWKS at once (a compromised key): the
    tokens it signed stop validating.

    Withdrawing the key a rotation is to hand over to cancels the hand-over: the keys that
    were to stop signing then keep signing; their kids are returned. Refuses
    (``LastSigningKey``) when the other keys would leave an instant from ``now`` on with
    no key to sign, since every token request would then fail until one does, unless
    ``force``.
    """
    published = {record.kid: record for record in store.list_keys()}
    if kid not in published:
        raise UnknownKey(f"no published key {kid!r} (see `swarm-oauth keys list`)")
    others = [record for record in published.values() if record.kid != kid]
    # A gap there already (a key forced out before) is not this retirement's doing.
    before = first_gap(published.values(), now)
    gap = first_gap(others, now)
    keepers: list[str] = []
    if gap is not None and now < gap and (before is None or gap < before):
        keepers = [r.kid for r in others if r.retires_at == gap]
        others = [
            replace(r, retires_at=None, unpublish_at=None) if r.kid in keepers else r
            for r in others
        ]
        gap = first_gap(others, now)
    if gap is not None and not force and (gap == now or before is None or gap < before):
        raise LastSigningKey(_no_signer(kid, others, now, gap))
    for keeper in keepers:  # first: at no instant does no key sign
        store.schedule_key_retirement(keeper, None, None)
    store.schedule_key_retirement(kid, now, now)
    return keepers


def _no_signer(kid: str, others: Sequence[KeyRecord], now: float, gap: float) -> str:
    """Why retiring ``kid`` is refused, and what to do instead."""
    if gap > now:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(gap))
        return (
            f"retiring {kid} would leave no key to sign tokens from {when}; rotate first "
            "(`swarm-oauth keys rotate`), or pass --force to accept that token requests "
            "fail from then until a key signs"
        )
    upcoming = sorted((r for r in others if r.activates_at > now), key=lambda r: r.activates_at)
    if upcoming:
        advice = (
            f"key {upcoming[0].kid} signs only in {upcoming[0].activates_at - now:.0f} s: "
            "retire this one after that"
        )
    else:
        advice = "no other key will sign"
    return (
        f"retiring {kid} now would leave no key to sign tokens ({advice}); to replace a "
        "compromised key at once, run `swarm-oauth keys rotate --publish-ahead 0` first, "
        "or pass --force to accept that token requests fail until a key signs"
    )
