import base64

from swarm_oauth.clients import generate_secret, hash_secret, verify_secret


def test_secret_has_256_bits_and_is_url_safe():
    secret = generate_secret()
    raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    assert len(raw) == 32
    assert len({generate_secret() for _ in range(1000)}) == 1000


def test_hash_is_not_the_secret_and_verifies():
    secret = generate_secret()
    stored = hash_secret(secret)
    assert secret not in stored
    assert stored.startswith("sha256$")
    assert verify_secret(secret, stored)


def test_wrong_or_missing_hash_does_not_verify():
    stored = hash_secret(generate_secret())
    assert not verify_secret(generate_secret(), stored)
    assert not verify_secret("", stored)
    assert not verify_secret("x", None)
    assert not verify_secret("x", "")


def test_a_secret_no_text_encodes_to_matches_nothing_and_raises_nothing():
    # A JSON body's "\ud800" is such a string; UTF-8 cannot encode it.
    stored = hash_secret(generate_secret())
    assert not verify_secret("\ud800", stored)
    assert not verify_secret("\ud800", None)
    assert hash_secret("\ud800") != hash_secret("\ufffd")
