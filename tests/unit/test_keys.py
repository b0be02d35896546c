import base64
import dataclasses
import json
import time

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swarm_oauth.keys import ALGORITHMS, MasterKey, MasterKeyError
from swarm_oauth.keys.keyring import KeyRing, first_gap, load_key, new_key_record, retire_key
from swarm_oauth.keys.material import public_jwk, thumbprint


def record(master, alg="ES256", activates_at=100.0, retires_at=None, unpublish_at=None):
    fresh = new_key_record(master, alg, "http://issuer", activates_at, activates_at)
    return dataclasses.replace(fresh, retires_at=retires_at, unpublish_at=unpublish_at)


@pytest.fixture
def master():
    return MasterKey.from_text(MasterKey.generate_text())


def test_master_key_round_trip_and_binding(master):
    blob = master.encrypt(b"private", b"kid-1")
    assert b"private" not in blob
    assert master.decrypt(blob, b"kid-1") == b"private"
    with pytest.raises(MasterKeyError):
        master.decrypt(blob, b"kid-2")  # moved onto another record
    other = MasterKey.from_text(MasterKey.generate_text())
    with pytest.raises(MasterKeyError, match="master key"):
        other.decrypt(blob, b"kid-1")


@pytest.mark.parametrize("text", ["", "not base64!", base64.b64encode(b"short").decode()])
def test_malformed_master_key_is_refused(text):
    with pytest.raises(MasterKeyError):
        MasterKey.from_text(text)


def test_master_key_repr_hides_it(master):
    assert "redacted" in repr(master)


@pytest.mark.parametrize("alg", ALGORITHMS)
def test_loaded_key_signs_what_its_jwk_and_certificate_verify(master, alg):
    loaded = load_key(record(master, alg), master)
    token = jwt.encode({"a": 1}, loaded.private_key, algorithm=alg)
    from_jwk = jwt.PyJWK(loaded.jwk).key
    assert jwt.decode(token, from_jwk, algorithms=[alg]) == {"a": 1}
    cert = x509.load_der_x509_certificate(base64.b64decode(loaded.jwk["x5c"][0]))
    assert jwt.decode(token, cert.public_key(), algorithms=[alg]) == {"a": 1}
    assert loaded.jwk["kid"] == thumbprint(public_jwk(loaded.private_key.public_key()))
    assert "d" not in loaded.jwk and "p" not in loaded.jwk  # public members only
    # "use" only: RFC 7517 §4.3 says not to give key_ops beside it.
    assert loaded.jwk["use"] == "sig" and "key_ops" not in loaded.jwk


def test_thumbprint_matches_rfc7638_example():
    # RFC 7638 §3.1
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YG"
        "jQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-b"
        "FTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_keyring_follows_the_timeline(master):
    old = record(master, activates_at=100, retires_at=200, unpublish_at=300)
    new = record(master, activates_at=200)
    ring = KeyRing([load_key(new, master), load_key(old, master)])
    assert ring.signing_key(150).kid == old.kid
    assert ring.signing_key(200).kid == new.kid
    assert ring.signing_key(50) is None
    kids = lambda t: [k["kid"] for k in ring.jwks(t)["keys"]]  # noqa: E731
    assert kids(150) == [old.kid, new.kid]  # the new key is published before it signs
    assert kids(250) == [old.kid, new.kid]  # the old one stays while its tokens live
    assert kids(300) == [new.kid]
    pem = ring.certificates_pem(250)
    assert pem.index(new.certificate_pem) == 0  # the signing key's certificate first
    assert old.certificate_pem in pem


def test_certificate_is_a_valid_self_signed_leaf(master):
    loaded = load_key(record(master), master)
    cert = x509.load_pem_x509_certificate(loaded.record.certificate_pem.encode())
    assert cert.issuer == cert.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert spki == loaded.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    json.dumps(loaded.jwk)  # serialisable as is


def test_keyring_load_leaves_out_a_key_another_master_key_encrypted(master, tmp_path):
    from swarm_oauth.keys import check_master_key
    from swarm_oauth.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "db.sqlite")
    store.migrate()
    good = record(master, activates_at=100)
    stranger = MasterKey.from_text(MasterKey.generate_text())
    bad = record(stranger, activates_at=200)
    store.add_key(good)
    store.add_key(bad)
    ring = KeyRing.load(store, master)
    assert [k.kid for k in ring.keys] == [good.kid]
    assert ring.signing_key(300).kid == good.kid  # the foreign key never signs
    with pytest.raises(MasterKeyError):
        check_master_key(store, master)
    store.close()


def test_tokens_never_outlive_their_keys_publication(master):
    from swarm_oauth.tokens import TokenIssuer

    retiring = record(master, activates_at=0, retires_at=2_000, unpublish_at=1_500)
    ring = KeyRing([load_key(retiring, master)])
    issued = TokenIssuer("http://i", lambda: ring, lifetime=900).issue("c", (), ("a",), 1_000)
    claims = jwt.decode(issued.access_token, options={"verify_signature": False})
    assert claims["exp"] == 1_500 - 60
    assert issued.expires_in == claims["exp"] - claims["iat"]


def keys_in(tmp_path, master, *timelines):
    """A real SQLite store holding one key per (activates_at, retires_at) of ``timelines``."""
    from swarm_oauth.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "keys.db"))
    store.migrate()
    made = []
    for activates_at, retires_at in timelines:
        made.append(record(master, activates_at=activates_at, retires_at=retires_at))
        store.add_key(made[-1])
        if retires_at is not None:
            store.schedule_key_retirement(made[-1].kid, retires_at, retires_at + 1000)
    return store, [r.kid for r in made]


def test_first_gap_is_the_first_instant_no_key_signs(master):
    def key(activates_at, retires_at=None):
        return record(master, activates_at=activates_at, retires_at=retires_at)

    assert first_gap([key(0, 100), key(100)], 50) is None
    assert first_gap([key(0, 100), key(150)], 50) == 100
    assert first_gap([key(60)], 50) == 50
    assert first_gap([], 50) == 50


def test_retiring_a_key_never_undoes_a_gap_it_did_not_make(tmp_path, master):
    # One key already ends with nothing after it (forced out before): retiring another,
    # whose end comes earlier, leaves the first as it was.
    now = time.time()
    store, (ending, other) = keys_in(tmp_path, master, (now - 10, now + 100), (now - 10, now + 50))
    assert retire_key(store, other, now) == []
    assert {r.kid: r.retires_at for r in store.list_keys()}[ending] == now + 100
    store.close()


def test_retiring_the_key_handed_over_to_keeps_the_signing_one(tmp_path, master):
    now = time.time()
    store, (current, pending) = keys_in(tmp_path, master, (now - 10, now + 300), (now + 300, None))
    assert retire_key(store, pending, now) == [current]
    (kept,) = store.list_keys()
    assert (kept.kid, kept.retires_at, kept.unpublish_at) == (current, None, None)
    store.close()
