"""Dynamic client registration (RFC 7591) and its management (RFC 7592) for the client
credentials grant: which client metadata a registration may carry, how a registered
client is shown, and the operations behind the registration endpoints.

Only what a client credentials client can use is accepted: the grant, the two ways the
token endpoint authenticates a client, the scope, and the descriptive fields, which are
kept and shown back. Any other field is ignored, as RFC 7591 §2 requires of metadata a
server does not understand. The accepted metadata is stored in the client's ``metadata``
under the RFC's names; the scope becomes the client's scopes.

A registration access token is, like a client secret, 256 random bits kept only as a hash.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from swarm_oauth.clients.secrets import generate_secret, hash_secret, verify_secret
from swarm_oauth.clients.service import (
    ClientNotFound,
    ClientService,
    IssuedSecret,
    validate_metadata,
)
from swarm_oauth.identifiers import InvalidClientData, is_client_id, validate_list
from swarm_oauth.store import ClientRecord
from swarm_oauth.tokens.grant import GRANT_TYPE

# What /api/token accepts (tokens.grant): HTTP Basic, or both credentials in the form.
AUTH_METHODS = ("client_secret_basic", "client_secret_post")
DEFAULT_AUTH_METHOD = "client_secret_basic"
# Descriptive metadata (RFC 7591 §2): kept and shown back, never interpreted.
TEXT_FIELDS = (
    "client_name",
    "client_uri",
    "logo_uri",
    "tos_uri",
    "policy_uri",
    "software_id",
    "software_version",
)
LIST_FIELDS = ("contacts",)
# Set by the server; an update request must not carry them (RFC 7592 §2.2).
SERVER_FIELDS = (
    "registration_access_token",
    "registration_client_uri",
    "client_secret_expires_at",
    "client_id_issued_at",
)
# The server picks client ids (RFC 7591 §3.2.1): 128 random bits after a prefix that tells
# them apart from the ids the registrar or an operator chose.
CLIENT_ID_PREFIX = "dcr-"
CLIENT_ID_BYTES = 16


class InvalidClientMetadata(ValueError):
    """A registration or update request the server refuses (RFC 7591 §3.2.2); ``error``
    is the code to answer with, the message says why."""

    def __init__(self, description: str, error: str = "invalid_client_metadata") -> None:
        super().__init__(description)
        self.error = error


class InvalidRegistrationToken(LookupError):
    """No client with this id holds this registration access token (or none at all);
    RFC 7592 answers both the same way, so the message never says which."""


@dataclass(frozen=True, slots=True)
class ClientMetadata:
    """The metadata of a registration request, checked and with defaults applied."""

    scopes: tuple[str, ...]
    token_endpoint_auth_method: str
    descriptive: Mapping[str, str | list[str]]

    def stored(self) -> dict[str, Any]:
        """What the client record's ``metadata`` keeps."""
        return {"token_endpoint_auth_method": self.token_endpoint_auth_method, **self.descriptive}


@dataclass(frozen=True, slots=True)
class Registration:
    """A client just registered, with its secret and registration access token in clear,
    which leave this process this once."""

    issued: IssuedSecret
    access_token: str

    def __repr__(self) -> str:  # a stray log or traceback must not print the token
        return f"Registration(client_id={self.issued.record.client_id!r}, <redacted>)"


def _absent(value: object) -> bool:
    # RFC 7592 §2.2 lets a server treat null or empty values as left out; this one does in
    # every request, except for an empty grant_types (a client with no grant at all).
    return value is None or value == [] or value == ""


def _strings(name: str, value: object, error: str = "invalid_client_metadata") -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidClientMetadata(f"{name} must be an array of strings", error)
    return value


def _scopes(scope: object) -> tuple[str, ...]:
    if _absent(scope):
        return ()
    if not isinstance(scope, str):
        raise InvalidClientMetadata("scope must be a string of space-separated scope values")
    try:
        return validate_list("scopes", scope.split(" "))
    except InvalidClientData as exc:
        raise InvalidClientMetadata(f"scope: {exc}") from None


def parse_metadata(body: Mapping[str, Any]) -> ClientMetadata:
    """The client metadata of a registration or update request; ``InvalidClientMetadata``
    when it asks for what a client credentials client cannot have."""
    grant_types = body.get("grant_types")
    if grant_types is not None and set(_strings("grant_types", grant_types)) != {GRANT_TYPE}:
        raise InvalidClientMetadata(f'grant_types must be ["{GRANT_TYPE}"]: the only grant here')
    if not _absent(body.get("response_types")):
        raise InvalidClientMetadata(
            "response_types must be empty: there is no authorization endpoint"
        )
    if not _absent(body.get("redirect_uris")):
        _strings("redirect_uris", body["redirect_uris"], "invalid_redirect_uri")
        raise InvalidClientMetadata(
            "redirect_uris must be empty: the client credentials grant redirects nowhere",
            "invalid_redirect_uri",
        )
    method = body.get("token_endpoint_auth_method")
    if _absent(method):
        method = DEFAULT_AUTH_METHOD
    elif method not in AUTH_METHODS:
        raise InvalidClientMetadata(
            f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}"
        )
    descriptive: dict[str, str | list[str]] = {}
    for name in TEXT_FIELDS:
        value = body.get(name)
        if _absent(value):
            continue
        if not isinstance(value, str):
            raise InvalidClientMetadata(f"{name} must be a string")
        descriptive[name] = value
    for name in LIST_FIELDS:
        if not _absent(body.get(name)):
            descriptive[name] = _strings(name, body[name])
    metadata = ClientMetadata(_scopes(body.get("scope")), str(method), descriptive)
    try:
        validate_metadata(metadata.stored())
    except InvalidClientData as exc:
        raise InvalidClientMetadata(str(exc)) from None
    return metadata


def client_information(
    record: ClientRecord,
    *,
    access_token: str,
    configuration_uri: str,
    secret: str | None = None,
) -> dict[str, Any]:
    """The client information response (RFC 7591 §3.2.1, RFC 7592 §3): what the client
    was registered with, the values the server chose, and its credentials (the secret
    only when just issued: only its hash is kept)."""
    info: dict[str, Any] = {"client_id": record.client_id}
    if secret is not None:
        info["client_secret"] = secret
    info.update(
        client_id_issued_at=int(record.created_at),
        # 0: the secret does not expire by itself (it changes only by rotation).
        client_secret_expires_at=0,
        registration_access_token=access_token,
        registration_client_uri=configuration_uri,
        # Both differ from the RFC's defaults (authorization_code, code), so both are shown;
        # redirect_uris has no default and none is registered.
        grant_types=[GRANT_TYPE],
        response_types=[],
    )
    stored = record.metadata
    method = stored.get("token_endpoint_auth_method")
    info["token_endpoint_auth_method"] = method if method in AUTH_METHODS else DEFAULT_AUTH_METHOD
    if record.scopes:
        info["scope"] = " ".join(record.scopes)
    # The admin API may have rewritten the metadata since: only well-formed fields show.
    for name in TEXT_FIELDS:
        if isinstance(stored.get(name), str):
            info[name] = stored[name]
    for name in LIST_FIELDS:
        value = stored.get(name)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            info[name] = value
    return info


def new_client_id() -> str:
    """A client id for a registration: random, and within the client id grammar."""
    return CLIENT_ID_PREFIX + secrets.token_urlsafe(CLIENT_ID_BYTES)


class RegistrationService:
    """Register, read, replace and delete clients the RFC 7591/7592 way, on top of the
    client lifecycle the admin API uses (so every change reaches the caches alike)."""

    def __init__(self, clients: ClientService) -> None:
        self._clients = clients

    def register(self, body: Mapping[str, Any]) -> Registration:
        """A new client with the server's id, a secret and a registration access token."""
        metadata = parse_metadata(body)
        token = generate_secret()
        issued = self._clients.add(
            new_client_id(),
            scopes=list(metadata.scopes),
            metadata=metadata.stored(),
            registration_token_hash=hash_secret(token),
        )
        return Registration(issued, token)

    def read(self, client_id: str, access_token: str) -> ClientRecord:
        """The client, if ``access_token`` is its registration access token."""
        record = None
        if is_client_id(client_id):
            with contextlib.suppress(ClientNotFound):
                record = self._clients.get(client_id)
        # verify_secret refuses a missing hash (admin-made clients have no RFC 7592 access)
        # after hashing all the same, so an unknown id takes as long as a wrong token.
        stored = record.registration_token_hash if record is not None else None
        if not verify_secret(access_token, stored) or record is None:
            raise InvalidRegistrationToken
        return record

    def replace(self, client_id: str, access_token: str, body: Mapping[str, Any]) -> ClientRecord:
        """Replace the client's metadata with ``body``'s (RFC 7592 §2.2): what it leaves
        out returns to its default. The secret and the access token stay as they are."""
        record = self.read(client_id, access_token)
        if body.get("client_id") != client_id:
            raise InvalidClientMetadata("client_id must be given and equal the client's")
        sent = [name for name in SERVER_FIELDS if not _absent(body.get(name))]
        if sent:
            raise InvalidClientMetadata(
                f"an update must not include {', '.join(sent)}: the server sets them",
                "invalid_request",
            )
        secret = body.get("client_secret")
        if not _absent(secret) and not (
            isinstance(secret, str) and verify_secret(secret, record.secret_hash)
        ):
            raise InvalidClientMetadata("client_secret is not the client's current secret")
        metadata = parse_metadata(body)
        try:
            return self._clients.update(
                client_id, scopes=list(metadata.scopes), metadata=metadata.stored()
            )
        except ClientNotFound:  # deleted since it was read
            raise InvalidRegistrationToken from None

    def delete(self, client_id: str, access_token: str) -> None:
        """Remove the client exactly as the admin API does; its tokens stop at once."""
        self.read(client_id, access_token)
        try:
            self._clients.remove(client_id)
        except ClientNotFound:  # deleted since it was read
            raise InvalidRegistrationToken from None
