"""The admin API's request bodies, declared once: the handlers accept exactly these
fields, and the OpenAPI document describes them from the same table. The value rules
themselves are the domain's (``identifiers``, ``clients.service``); their limits are
quoted here from there, never copied."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from swarm_oauth.clients.service import MAX_METADATA_BYTES
from swarm_oauth.identifiers import (
    CLIENT_ID_PATTERN,
    MAX_AUDIENCE_LENGTH,
    MAX_GRACE_SECONDS,
    MAX_LIST_ITEMS,
    SCOPE_TOKEN_PATTERN,
)

CLIENT_ID = {"type": "string", "pattern": f"^{CLIENT_ID_PATTERN}$"}

FIELDS: dict[str, dict[str, Any]] = {
    "client_id": CLIENT_ID,
    "scopes": {
        "type": "array",
        "maxItems": MAX_LIST_ITEMS,
        "items": {"type": "string", "pattern": f"^{SCOPE_TOKEN_PATTERN}$"},
    },
    "audiences": {
        "type": "array",
        "maxItems": MAX_LIST_ITEMS,
        "items": {
            "type": "string",
            "pattern": f"^{SCOPE_TOKEN_PATTERN}$",
            "maxLength": MAX_AUDIENCE_LENGTH,
        },
    },
    "metadata": {
        "type": "object",
        "description": f"Any JSON object of at most {MAX_METADATA_BYTES} bytes once encoded.",
    },
    "grace_seconds": {"type": "integer", "minimum": 0, "maximum": MAX_GRACE_SECONDS},
    "replace_current": {
        "type": "boolean",
        "description": "Replace the current secret, which was never handed out, and keep "
        "the previous one and its grace (grace_seconds is then ignored).",
    },
}


@dataclass(frozen=True)
class Body:
    """A JSON object body: which fields it takes and which it needs."""

    fields: tuple[str, ...]
    required: frozenset[str] = frozenset({"client_id"})

    def schema(self) -> dict[str, Any]:
        """Its JSON Schema, for the OpenAPI document."""
        return {
            "type": "object",
            "properties": {name: FIELDS[name] for name in self.fields},
            "required": sorted(self.required),
            "additionalProperties": False,
        }


ADD = Body(("client_id", "scopes", "audiences", "metadata"))
UPDATE = Body(("client_id", "scopes", "audiences", "metadata"))
ROTATE = Body(("client_id", "grace_seconds", "replace_current"))
REMOVE = Body(("client_id",))
REVOKE_TOKENS = Body(("client_id",))


# ``GET /api/clients`` answers in pages, so a registry of thousands stays listable.
LIST_LIMIT_DEFAULT = 100
LIST_LIMIT_MAX = 1000
LIST_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "limit",
        "in": "query",
        "description": "Clients per page.",
        "schema": {
            "type": "integer",
            "minimum": 1,
            "maximum": LIST_LIMIT_MAX,
            "default": LIST_LIMIT_DEFAULT,
        },
    },
    {
        "name": "cursor",
        "in": "query",
        "description": "The next_cursor of the previous page; absent for the first page.",
        "schema": {"type": "string"},
    },
]
