"""OAuth clients: secrets, validation and lifecycle."""

from swarm_oauth.clients.secrets import generate_secret, hash_secret, verify_secret
from swarm_oauth.clients.service import (
    ClientNotFound,
    ClientService,
    IssuedSecret,
    issued_view,
    public_record,
)
from swarm_oauth.identifiers import InvalidClientData, validate_client_id

__all__ = [
    "ClientNotFound",
    "ClientService",
    "InvalidClientData",
    "IssuedSecret",
    "generate_secret",
    "hash_secret",
    "issued_view",
    "public_record",
    "validate_client_id",
    "verify_secret",
]
