"""The registrar's records in Docker configs can be imitated by anyone with access to the
Docker API: what is not a record the registrar could have written is not one, and never
makes a pass fail."""

from __future__ import annotations

import secrets

import pytest

from swarm_oauth.registrar.registrations import (
    NAME_LABEL,
    PUBLIC_LABEL,
    REGISTRATION,
    SEALED_LABEL,
    RegistrationBook,
)
from swarm_oauth.registrar.sealing import Sealer
from swarm_oauth.registrar.spec import SECRET_CLIENT_ID_LABEL, SERVICE_ID_LABEL
from tests.support.fakes import FakeSwarm

PUBLIC = '{"metadata": {}, "scopes": [], "secret_version": 1, "generation": 1}'


@pytest.mark.parametrize(
    "public",
    [
        "[" * 100_000,  # nested deeper than the JSON parser goes (3.11 to 3.13)
        "not json",
        '{"metadata": {}}',
        "[]",
    ],
)
def test_a_forged_registration_record_is_not_one(public):
    swarm = FakeSwarm()
    labels = {
        **REGISTRATION,
        SECRET_CLIENT_ID_LABEL: "web",
        SERVICE_ID_LABEL: "svc1",
        NAME_LABEL: "web",
        SEALED_LABEL: "AAAA",
    }
    swarm.create_config("forged", b"", {**labels, PUBLIC_LABEL: public})
    swarm.create_config("well-formed", b"", {**labels, PUBLIC_LABEL: PUBLIC})
    book = RegistrationBook(swarm, Sealer(secrets.token_bytes(32)))
    # Only the well-formed one is read (its seal does not open: that shows when it is used).
    assert [r.client_id for r in book.all()] == ["web"]
    assert book.get("web") is not None
