"""VerifiedCache: what it serves again, and everything that makes it stop."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle

import pytest

from swarm_oauth.sdk import InsufficientScope
from swarm_oauth.sdk.cache import Claims, Verified, VerifiedCache


def verified(jti: str = "j1", client_id: str = "orders", iat: int = 1000, until: float = 2000.0,
             kid: str = "k1") -> Verified:  # fmt: skip
    claims = Claims({"jti": jti, "client_id": client_id, "iat": iat, "scope": "read write"})
    return Verified(claims, frozenset({"read", "write"}), until, kid)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_hit_is_the_same_read_only_claims() -> None:
    cache = VerifiedCache(clock=Clock(1500))
    cache.put("token", verified(), cache.epoch)
    first = cache.get("token")
    assert first is not None
    claims = first.grant([])
    for change in (
        lambda: claims.__setitem__("scope", "admin"),
        lambda: claims.update(scope="admin"),
        lambda: claims.setdefault("admin", True),
        lambda: claims.pop("scope"),
        lambda: claims.__delitem__("scope"),
        claims.popitem,
        claims.clear,
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    with pytest.raises(TypeError, match="read-only"):
        claims |= {"scope": "admin"}
    second = cache.get_sent(b"Bearer token")  # a header's value as sent
    assert second is not None
    assert second.grant([]) is claims
    assert claims["scope"] == "read write"
    assert cache.get("another token") is None


@pytest.mark.parametrize(
    "value", [b"token", b"bearer token", b"Bearer  token", b"Bearer token ", b"Bearer tokenx"]
)
def test_a_header_value_spelled_otherwise_finds_nothing(value: bytes) -> None:
    cache = VerifiedCache(clock=Clock(1500))
    cache.put("token", verified(), cache.epoch)
    assert cache.get_sent(value) is None
    assert len(cache) == 1  # and the entry is kept for the token's own spelling
    assert cache.get_sent(b"Bearer token") is not None


def test_any_text_has_a_key_a_lone_surrogate_too() -> None:
    cache = VerifiedCache(clock=Clock(1500))
    cache.put("a\ud800", verified(), cache.epoch)
    assert cache.get("a\ud800") is not None
    assert cache.get("a?") is None
    assert cache.get("a\ufffd") is None


def test_claims_are_a_dict_to_readers_and_copies_may_change() -> None:
    claims = verified().claims
    assert isinstance(claims, dict)
    assert json.loads(json.dumps(claims)) == claims
    pickled = pickle.loads(pickle.dumps(claims))  # noqa: S301 (our own bytes, just made)
    for copied in (dict(claims), claims.copy(), copy.deepcopy(claims), pickled):
        assert type(copied) is dict
        assert copied == claims
        copied["scope"] = "admin"
    assert claims["scope"] == "read write"


def test_scopes_are_checked_on_every_call() -> None:
    entry = verified()
    assert entry.grant(["read"])["jti"] == "j1"
    with pytest.raises(InsufficientScope, match=r"token lacks scope\(s\): admin"):
        entry.grant(["read", "admin"])
    with pytest.raises(InsufficientScope):  # any iterable, read once
        entry.grant(scope for scope in ["admin"])


def test_never_served_at_or_past_its_end() -> None:
    clock = Clock(1999.999)
    cache = VerifiedCache(clock=clock)
    cache.put("token", verified(until=2000.0), cache.epoch)
    assert cache.get("token") is not None
    clock.now = 2000.0
    assert cache.get("token") is None
    assert len(cache) == 0  # and dropped


def test_the_tokens_of_a_key_gone_or_replaced_are_dropped_and_stay_out() -> None:
    cache = VerifiedCache(clock=Clock(1500))
    cache.put("t1", verified(jti="j1", kid="k1"), cache.epoch)
    cache.put("t2", verified(jti="j2", kid="k2"), cache.epoch)
    cache.put("t3", verified(jti="j3", kid="k1"), cache.epoch)
    epoch = cache.epoch  # a verification with key k1 starts
    assert cache.drop_keys(frozenset({"k1", "k9"})) == 2
    assert cache.get("t1") is None and cache.get("t3") is None
    assert cache.get("t2") is not None
    cache.put("t1", verified(jti="j1", kid="k1"), epoch)  # ... and ends after the drop
    assert cache.get("t1") is None


def test_bounded_the_oldest_going_first() -> None:
    cache = VerifiedCache(size=2, clock=Clock(1500))
    for name in ("a", "b", "c"):
        cache.put(name, verified(jti=name), cache.epoch)
    assert len(cache) == 2
    assert cache.get("a") is None
    assert cache.get("c") is not None


def test_size_zero_keeps_nothing() -> None:
    cache = VerifiedCache(size=0, clock=Clock(1500))
    cache.put("token", verified(), cache.epoch)
    assert cache.get("token") is None


def test_keyed_by_a_digest_not_by_the_token() -> None:
    cache = VerifiedCache(clock=Clock(1500))
    cache.put("secret.bearer.token", verified(), cache.epoch)
    assert list(cache._entries) == [hashlib.sha256(b"Bearer secret.bearer.token").digest()]


def test_revocation_hooks_drop_by_jti_and_by_client_issued_before() -> None:
    cache = VerifiedCache(clock=Clock(1500))
    cache.put("t1", verified(jti="j1", client_id="orders", iat=1000), cache.epoch)
    cache.put("t2", verified(jti="j2", client_id="orders", iat=1100), cache.epoch)
    cache.put("t3", verified(jti="j3", client_id="billing", iat=1000), cache.epoch)
    assert cache.drop_jti("j3") == 1
    assert cache.get("t3") is None
    assert cache.drop_client("orders", issued_before=1099.5) == 1
    assert cache.get("t1") is None
    assert cache.get("t2") is not None  # issued after the cut-off: kept
    assert cache.drop_client("orders", issued_before=1100) == 1  # at it: revoked
    assert cache.get("t2") is None
    assert cache.drop_jti("unknown") == 0


def test_a_verification_under_way_during_a_drop_is_not_cached() -> None:
    cache = VerifiedCache(clock=Clock(1500))
    epoch = cache.epoch  # a full verification of "t1" starts...
    cache.drop_jti("j1")  # ...its token is revoked meanwhile...
    cache.put("t1", verified(jti="j1"), epoch)  # ...and it ends
    assert cache.get("t1") is None
    cache.put("t1", verified(jti="j1"), cache.epoch)
    assert cache.get("t1") is not None
