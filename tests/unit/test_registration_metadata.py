"""RFC 7591 metadata and the client information response, as pure functions."""

from __future__ import annotations

import re

from swarm_oauth.clients.registration import (
    Registration,
    client_information,
    new_client_id,
    parse_metadata,
)
from swarm_oauth.clients.service import IssuedSecret
from swarm_oauth.identifiers import is_client_id
from swarm_oauth.store import ClientRecord


def record(metadata: dict[str, object], scopes: tuple[str, ...] = ()) -> ClientRecord:
    return ClientRecord(
        client_id="dcr-x",
        secret_hash="sha256$s",
        scopes=scopes,
        audiences=(),
        metadata=metadata,
        created_at=1_700_000_000.75,
        updated_at=1_700_000_000.75,
        registration_token_hash="sha256$t",
    )


def test_an_empty_request_gets_the_defaults() -> None:
    metadata = parse_metadata({})
    assert metadata.scopes == ()
    assert metadata.stored() == {"token_endpoint_auth_method": "client_secret_basic"}


def test_scope_becomes_unique_scopes_in_order() -> None:
    assert parse_metadata({"scope": "b a b"}).scopes == ("b", "a")


def test_metadata_the_admin_api_rewrote_shows_only_what_is_well_formed() -> None:
    mangled = {
        "token_endpoint_auth_method": "private_key_jwt",
        "client_name": 5,
        "contacts": ["ok", 1],
        "logo_uri": "https://logo.example/x.png",
        "service_id": "abc",
    }
    info = client_information(
        record(mangled, scopes=("read", "write")),
        access_token="rat",
        configuration_uri="https://as.example/api/register/dcr-x",
    )
    assert info == {
        "client_id": "dcr-x",
        "client_id_issued_at": 1_700_000_000,
        "client_secret_expires_at": 0,
        "registration_access_token": "rat",
        "registration_client_uri": "https://as.example/api/register/dcr-x",
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "read write",
        "logo_uri": "https://logo.example/x.png",
    }


def test_server_chosen_ids_are_valid_client_ids_and_unpredictable() -> None:
    ids = {new_client_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_client_id(i) and re.fullmatch(r"dcr-[A-Za-z0-9_-]{22}", i) for i in ids)


def test_a_registration_never_prints_its_credentials() -> None:
    registration = Registration(IssuedSecret(record({}), "the-secret"), "the-token")
    text = f"{registration!r} {registration}"
    assert "the-secret" not in text and "the-token" not in text and "dcr-x" in text
