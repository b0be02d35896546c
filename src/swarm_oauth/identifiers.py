"""What a client id, a scope and an audience may look like, and the bounds of client
fields: the grammar the server and the registrar share."""

from __future__ import annotations

import re
from urllib.parse import quote

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
SCOPE_TOKEN_PATTERN = r"[\x21\x23-\x5b\x5d-\x7e]+"
CLIENT_ID_PATTERN = r"[A-Za-z0-9._-]{1,128}"
_SCOPE_TOKEN = re.compile(SCOPE_TOKEN_PATTERN)
_CLIENT_ID = re.compile(CLIENT_ID_PATTERN)
MAX_LIST_ITEMS = 100
MAX_AUDIENCE_LENGTH = 512
# How long a rotated-out client secret may keep working.
MAX_GRACE_SECONDS = 30 * 86400
# The clients API's 404 for an unknown client id, which its clients tell from any other.
NO_CLIENT = "no client with this client_id"


class InvalidClientData(ValueError):
    """A client field is malformed; the message says which and why."""


def path_segment(client_id: str) -> str:
    """``client_id`` as one segment of a URL path. ``.`` and ``..`` are client ids too,
    which an HTTP client would resolve as dot segments (``/api/clients/.`` is
    ``/api/clients/``), so their dots are percent-encoded (RFC 3986 §5.2.4)."""
    segment = quote(client_id, safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment


def is_client_id(value: str) -> bool:
    """Whether ``value`` is 1-128 characters of ``[A-Za-z0-9._-]``: what every client id
    is, so anything else names no client and needs no lookup (and is safe to log)."""
    return _CLIENT_ID.fullmatch(value) is not None


def validate_client_id(client_id: object) -> str:
    """Return ``client_id`` if it is 1-128 characters of ``[A-Za-z0-9._-]``."""
    if not isinstance(client_id, str):
        raise InvalidClientData("client_id must be a string")
    if not is_client_id(client_id):
        raise InvalidClientData("client_id must be 1-128 characters of A-Z a-z 0-9 . _ -")
    return client_id


def is_scope_token(value: str) -> bool:
    """Whether ``value`` is one RFC 6749 scope token."""
    return _SCOPE_TOKEN.fullmatch(value) is not None


def is_audience(value: str) -> bool:
    """Whether ``value`` can be an audience: printable ASCII without spaces."""
    return 0 < len(value) <= MAX_AUDIENCE_LENGTH and _SCOPE_TOKEN.fullmatch(value) is not None


def validate_list(field: str, values: object) -> tuple[str, ...]:
    """A list of unique valid scope tokens (``scopes``) or audiences (``audiences``)."""
    if values is None:
        return ()
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise InvalidClientData(f"{field} must be a list of strings")
    if len(values) > MAX_LIST_ITEMS:
        raise InvalidClientData(f"{field} may hold at most {MAX_LIST_ITEMS} items")
    valid = is_scope_token if field == "scopes" else is_audience
    for value in values:
        if not valid(value):
            raise InvalidClientData(
                f"{field} items must be printable ASCII without spaces, quotes or backslashes"
            )
    return tuple(dict.fromkeys(values))
