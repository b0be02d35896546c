"""Selection, and the identity a service's labels ask for."""

from __future__ import annotations

import pytest

from swarm_oauth.registrar.labels import Ask, InvalidLabels, Selector, read_labels
from swarm_oauth.registrar.model import ObservedService, client_metadata


def service(labels: dict[str, str]) -> ObservedService:
    return ObservedService(id="abcdef0123456789", name="shop_orders", labels=labels)


@pytest.mark.parametrize(
    ("selector", "labels", "selected"),
    [
        ("swarm-oauth.client=true", {"swarm-oauth.client": "true"}, True),
        ("swarm-oauth.client=true", {"swarm-oauth.client": "True"}, True),
        ("swarm-oauth.client=true", {"swarm-oauth.client": "false"}, False),
        ("swarm-oauth.client=true", {}, False),
        ("com.df.notify", {"com.df.notify": "anything"}, True),
        ("com.df.notify", {"com.df.notifyDev": "true"}, False),
        ("tier=back end", {"tier": "back end"}, True),
    ],
)
def test_selector(selector, labels, selected):
    assert Selector.parse(selector).matches(labels) is selected


@pytest.mark.parametrize("text", ["", "=true", "  =x"])
def test_a_selector_must_name_a_label(text):
    with pytest.raises(ValueError, match="names no label"):
        Selector.parse(text)


def test_no_labels_ask_for_nothing_but_the_default_target():
    assert read_labels(service({})) == Ask(None, (), (), "oauth_client_secret")


def test_labels_set_the_identity():
    labels = {
        "swarm-oauth.client-id": "orders",
        "swarm-oauth.scopes": " read  write read ",
        "swarm-oauth.audience": "https://api.example billing",
        "swarm-oauth.secret-target": "client.secret",
    }
    assert read_labels(service(labels)) == Ask(
        "orders", ("read", "write"), ("https://api.example", "billing"), "client.secret"
    )


def test_labels_set_the_secret_files_owner_and_mode():
    labels = {"swarm-oauth.secret-uid": "1000", "swarm-oauth.secret-gid": "2000",
              "swarm-oauth.secret-mode": "0400"}  # fmt: skip
    ask = read_labels(service(labels))
    assert (ask.uid, ask.gid, ask.mode) == ("1000", "2000", 0o400)


@pytest.mark.parametrize(
    ("label", "value", "reason"),
    [
        ("swarm-oauth.client-id", "a b", "client-id"),
        ("swarm-oauth.client-id", "x" * 129, "client-id"),
        ("swarm-oauth.client-id", "..", "dots"),
        ("swarm-oauth.scopes", 'a"b', "scope"),
        ("swarm-oauth.audience", "caf\u00e9", "audience"),
        ("swarm-oauth.secret-target", "../etc/passwd", "secret-target"),
        ("swarm-oauth.secret-target", "a/b", "secret-target"),
        ("swarm-oauth.secret-target", ".hidden", "secret-target"),
        ("swarm-oauth.secret-uid", "root", "secret-uid"),
        ("swarm-oauth.secret-gid", "-1", "secret-gid"),
        # Past 32 bits Docker would wrap it to another id (9999999999 is 1410065407).
        ("swarm-oauth.secret-uid", "9999999999", "0 to 4294967294"),
        ("swarm-oauth.secret-gid", "4294967295", "0 to 4294967294"),
        ("swarm-oauth.secret-mode", "0999", "secret-mode"),
        ("swarm-oauth.secret-mode", "rw", "secret-mode"),
        # Replaced on every pass, each time restarting the service's tasks.
        ("swarm-oauth.secret-max-age", "0.001", "at least 30s"),
        ("swarm-oauth.secret-max-age", "29s", "at least 30s"),
        ("swarm-oauth.secret-max-age", "\u0661\u0660d", "not a duration"),  # Arabic-Indic 10
        # What the clients API would refuse, on every pass.
        ("swarm-oauth.scopes", " ".join(f"s{n}" for n in range(101)), "at most 100"),
        ("swarm-oauth.audience", " ".join(f"a{n}" for n in range(101)), "at most 100"),
    ],
)
def test_impossible_labels_are_refused_with_a_reason(label, value, reason):
    with pytest.raises(InvalidLabels, match=reason):
        read_labels(service({label: value}))


@pytest.mark.parametrize(("value", "seconds"), [("30s", 30.0), ("1h", 3600.0), ("0", 0.0)])
def test_a_secret_max_age_from_30_seconds_or_never(value, seconds):
    assert read_labels(service({"swarm-oauth.secret-max-age": value})).secret_max_age == seconds


def test_metadata_records_the_service():
    meta = client_metadata(service({}), "nonce")
    assert meta == {
        "managed_by": "swarm-oauth-registrar",
        "service_id": "abcdef0123456789",
        "service_name": "shop_orders",
        "incarnation": "nonce",
    }
