"""The Docker side of an identity: secret names and the service spec edits."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from swarm_oauth.registrar.model import (
    ClientInfo,
    DesiredIdentity,
    DockerConfig,
    DockerSecret,
    ObservedService,
    Reservation,
)
from swarm_oauth.registrar.model import SecretRef as Ref
from swarm_oauth.registrar.spec import (
    RESERVED_UNTIL_LABEL,
    attach,
    detach,
    reservation_labels,
    reservation_of,
    secret_name,
    target_taken,
)

# Docker's rule for secret names (swarmkit validateSecretSpec / validateConfigOrSecretSpec).
DOCKER_NAME = re.compile(r"^[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?$")


def service(labels: dict[str, str], **fields: object) -> ObservedService:
    return ObservedService(id="abcdef0123456789", name="shop_orders", labels=labels, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "client_id",
    # The last ones as servers that pick ids write them (Gluu's inums, a UUID URN, ...).
    ["a", "orders", "x" * 128, "a." * 40 + "b", "-lead-", "_x_", "@!1234!0001.aBc",
     "urn:uuid:0f8fad5b-d9cb-469f", "ünïcode id", "%%%"],
)  # fmt: skip
def test_secret_names_are_valid_docker_names_within_64_characters(client_id):
    client = ClientInfo(client_id, 123456, {"incarnation": "0123456789abcdef"})
    name = secret_name(client, "q2x8r0vnb9l3p6m1z4k7j5h2g")
    assert len(name) <= 64
    assert DOCKER_NAME.match(name), name
    assert name.endswith("-q2x8r0vnb9-01234567-v123456")


def test_secret_names_differ_between_incarnations_and_versions():
    names = {
        secret_name(ClientInfo("orders", version, {"incarnation": nonce}), "sid")
        for version in (1, 2)
        for nonce in ("aaaa", "bbbb")
    }
    assert len(names) == 4


CURRENT = DockerSecret("cur", "oauth-orders-v2", {})
DESIRED = DesiredIdentity("orders", (), (), "oauth_client_secret")
USER_REF = Ref("db", "db_password", "db_password", "1000", "1000", 0o400)
OURS = Ref("cur", "oauth-orders-v2", "oauth_client_secret")
ENV = (
    "A=1",
    "OAUTH_CLIENT_ID=orders",
    "OAUTH_TOKEN_URL=http://t/api/token",
    "OAUTH_CLIENT_SECRET_FILE=/run/secrets/oauth_client_secret",
)


def attach_to(observed: ObservedService, managed_ids: set[str]) -> Any:
    return attach(observed, DESIRED, DESIRED.client_id, CURRENT, managed_ids, "http://t/api/token")


def test_attach_adds_the_ref_and_env_and_keeps_the_rest():
    refs, env = attach_to(service({}, secret_refs=(USER_REF,), env=("A=1",)), {"cur"})
    assert refs == [USER_REF, OURS]
    assert env == list(ENV)


def test_attach_is_none_when_already_attached():
    converged = service({}, secret_refs=(OURS, USER_REF), env=ENV)
    assert attach_to(converged, {"cur"}) is None


def test_attach_replaces_old_generations_and_wrong_values():
    old = Ref("old", "oauth-orders-v1", "oauth_client_secret")
    stale_env = ("OAUTH_CLIENT_ID=someone", "A=1", "OAUTH_CLIENT_ID=dup")
    refs, env = attach_to(service({}, secret_refs=(old, USER_REF), env=stale_env), {"cur", "old"})
    assert refs == [USER_REF, OURS]
    assert env == [
        "OAUTH_CLIENT_ID=orders",
        "A=1",
        "OAUTH_TOKEN_URL=http://t/api/token",
        "OAUTH_CLIENT_SECRET_FILE=/run/secrets/oauth_client_secret",
    ]


def test_attach_fixes_a_ref_whose_mode_was_changed():
    loose = Ref("cur", "oauth-orders-v2", "oauth_client_secret", "0", "0", 0o777)
    refs, _ = attach_to(service({}, secret_refs=(loose,), env=ENV), {"cur"})
    assert refs == [OURS]


def test_target_taken_only_by_foreign_secrets():
    foreign = Ref("theirs", "x", "oauth_client_secret")
    assert target_taken(service({}, secret_refs=(foreign,)), DESIRED, {"cur"})
    assert not target_taken(service({}, secret_refs=(OURS, USER_REF)), DESIRED, {"cur"})


def test_detach_removes_only_what_the_registrar_added():
    refs, env = detach(service({}, secret_refs=(USER_REF, OURS), env=ENV), {"cur"})
    assert (refs, env) == ([USER_REF], ["A=1"])


def test_detach_leaves_a_service_without_registrar_secrets_alone():
    assert detach(service({}, secret_refs=(USER_REF,), env=ENV), {"cur"}) is None


@pytest.mark.parametrize(
    "until", ["1767225600", "999999999999", "²", "\u0661", "", "-1", "1.5", "9" * 13, "9" * 400]
)
def test_a_reservation_is_read_from_its_labels_only_when_they_are_one(until):
    labels = reservation_labels("orders", "shop_orders", 1767225600.0)
    config = DockerConfig("cfg", "oauth-reserved-orders-x", {**labels, RESERVED_UNTIL_LABEL: until})
    reservation = reservation_of(config)
    if until in ("1767225600", "999999999999"):
        assert reservation == Reservation("cfg", "orders", "shop_orders", float(until))
        time.gmtime(reservation.until)  # a time the registrar can show (it logs it)
    else:
        # Labels anyone with Docker access may write: "²" is a digit to str.isdigit only,
        # and 20 nines no time gmtime() can show.
        assert reservation is None
