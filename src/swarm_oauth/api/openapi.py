"""The OpenAPI 3.1 document of what a role serves."""

from __future__ import annotations

from typing import Any

from swarm_oauth import __version__
from swarm_oauth.api.admin_bodies import (
    ADD,
    CLIENT_ID,
    LIST_PARAMETERS,
    REMOVE,
    REVOKE_TOKENS,
    ROTATE,
    UPDATE,
    Body,
)
from swarm_oauth.api.registration import CONFIGURATION_PATH, REGISTER_PATH
from swarm_oauth.clients.registration import (
    AUTH_METHODS,
    DEFAULT_AUTH_METHOD,
    LIST_FIELDS,
    TEXT_FIELDS,
)
from swarm_oauth.tokens.grant import GRANT_TYPE

_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): _json(_ERROR, "error with a reason") for s in statuses}


_STRINGS = {"type": "array", "items": {"type": "string"}}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "error_description"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    },
    "Client": {
        "type": "object",
        "properties": {
            "client_id": CLIENT_ID,
            "scopes": _STRINGS,
            "audiences": _STRINGS,
            "metadata": {"type": "object"},
            "secret_version": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
        },
    },
    "IssuedClient": {
        "allOf": [
            {"$ref": "#/components/schemas/Client"},
            {"type": "object", "properties": {"client_secret": {"type": "string"}}},
        ]
    },
    "Introspection": {
        "type": "object",
        "required": ["active"],
        "description": "RFC 7662 §2.2; only active is present for an inactive token.",
        "properties": {
            "active": {"type": "boolean"},
            "client_id": {"type": "string"},
            "sub": {"type": "string"},
            "scope": {"type": "string"},
            "aud": {"oneOf": [{"type": "string"}, _STRINGS]},
            "iss": {"type": "string"},
            "exp": {"type": "integer"},
            "iat": {"type": "integer"},
            "jti": {"type": "string"},
            "token_type": {"const": "Bearer"},
        },
    },
    "RevocationList": {
        "type": "object",
        "properties": {
            "tokens": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "jti": {"type": "string"},
                        "client_id": {"type": "string"},
                        "expires_at": {"type": "number"},
                    },
                },
            },
            "clients": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "client_id": {"type": "string"},
                        "issued_before": {"type": "number"},
                        "expires_at": {"type": "number"},
                    },
                },
            },
        },
    },
    "TokenResponse": {
        "type": "object",
        "required": ["access_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"},
            "token_type": {"const": "Bearer"},
            "expires_in": {"type": "integer"},
            "scope": {"type": "string"},
        },
    },
}


def _body(body: Body) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": body.schema()}}}


def _form(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": properties}
    return {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": schema}},
    }


# client_secret_post's fields; client_secret_basic sends them in Authorization instead.
_CLIENT_FORM = {"client_id": {"type": "string"}, "client_secret": {"type": "string"}}

_ADMIN: dict[str, Any] = {"security": [{"adminToken": []}]}

CLIENT_PATHS: dict[str, Any] = {
    "/api/clients": {
        "get": {
            **_ADMIN,
            "summary": "List clients, ordered by id, a page at a time",
            "parameters": LIST_PARAMETERS,
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "clients": {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/Client"},
                            },
                            "next_cursor": {
                                "type": ["string", "null"],
                                "description": "Pass as cursor for the next page; null on "
                                "the last page.",
                            },
                        },
                    },
                    "clients",
                ),
                **_errors(400, 401),
            },
        },
    },
    "/api/clients/add": {
        "post": {
            **_ADMIN,
            "summary": "Add a client; the secret is returned this once",
            "requestBody": _body(ADD),
            "responses": {
                "201": _json(
                    {"$ref": "#/components/schemas/IssuedClient"}, "the client with its secret"
                ),
                **_errors(400, 401, 409, 413, 415),
            },
        },
    },
    "/api/clients/remove": {
        "post": {
            **_ADMIN,
            "summary": "Remove a client",
            "requestBody": _body(REMOVE),
            "responses": {
                "200": _json({"type": "object"}, "removed"),
                **_errors(400, 401, 404, 413, 415),
            },
        },
    },
    "/api/clients/rotate": {
        "post": {
            **_ADMIN,
            "summary": "Rotate a client's secret",
            "requestBody": _body(ROTATE),
            "responses": {
                "200": _json(
                    {"$ref": "#/components/schemas/IssuedClient"}, "the client with its new secret"
                ),
                **_errors(400, 401, 404, 413, 415),
            },
        },
    },
    "/api/clients/update": {
        "post": {
            **_ADMIN,
            "summary": "Change a client's scopes, audiences or metadata",
            "requestBody": _body(UPDATE),
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Client"}, "the updated client"),
                **_errors(400, 401, 404, 413, 415),
            },
        },
    },
    "/api/clients/revoke-tokens": {
        "post": {
            **_ADMIN,
            "summary": "Revoke every token issued to a client until now",
            "requestBody": _body(REVOKE_TOKENS),
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {
                            "client_id": CLIENT_ID,
                            "issued_before": {"type": "number", "description": "Unix time"},
                        },
                    },
                    "tokens issued up to issued_before no longer validate",
                ),
                **_errors(400, 401, 404, 413, 415),
            },
        },
    },
    "/api/clients/{client_id}": {
        "get": {
            **_ADMIN,
            "summary": "Show a client",
            "parameters": [
                {"name": "client_id", "in": "path", "required": True, "schema": CLIENT_ID}
            ],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Client"}, "client"),
                **_errors(400, 401, 404),
            },
        },
    },
}

# RFC 7591/7592, described from the table the endpoints check against.
_METADATA = {
    "type": "object",
    "description": "RFC 7591 client metadata; fields not listed here are ignored.",
    "properties": {
        "grant_types": {"type": "array", "items": {"const": GRANT_TYPE}},
        "response_types": {"type": "array", "maxItems": 0},
        "redirect_uris": {"type": "array", "maxItems": 0},
        "token_endpoint_auth_method": {"enum": list(AUTH_METHODS), "default": DEFAULT_AUTH_METHOD},
        "scope": {"type": "string", "description": "Space-separated scope values."},
        **{name: {"type": "string"} for name in TEXT_FIELDS},
        **{name: _STRINGS for name in LIST_FIELDS},
    },
}
_INFORMATION = {
    "allOf": [
        _METADATA,
        {
            "type": "object",
            "required": [
                "client_id",
                "client_id_issued_at",
                "client_secret_expires_at",
                "registration_access_token",
                "registration_client_uri",
            ],
            "properties": {
                "client_id": CLIENT_ID,
                "client_secret": {"type": "string", "description": "At registration only."},
                "client_id_issued_at": {"type": "integer"},
                "client_secret_expires_at": {"const": 0},
                "registration_access_token": {"type": "string"},
                "registration_client_uri": {"type": "string", "format": "uri"},
            },
        },
    ]
}
_CONFIGURATION = {
    "security": [{"registrationAccessToken": []}],
    "parameters": [{"name": "client_id", "in": "path", "required": True, "schema": CLIENT_ID}],
}
_METADATA_BODY = {"required": True, "content": {"application/json": {"schema": _METADATA}}}

REGISTRATION_PATHS: dict[str, Any] = {
    REGISTER_PATH: {
        "post": {
            "security": [{"adminToken": []}],
            "summary": "Register a client (RFC 7591); the admin token is the initial access "
            "token, the client id is the server's choice",
            "requestBody": _METADATA_BODY,
            "responses": {
                "201": _json(_INFORMATION, "the client with its secret and access token"),
                **_errors(400, 401, 413, 415),
            },
        },
    },
    CONFIGURATION_PATH: {
        "get": {
            **_CONFIGURATION,
            "summary": "Read a registered client (RFC 7592 §2.1)",
            "responses": {"200": _json(_INFORMATION, "the client"), **_errors(401)},
        },
        "put": {
            **_CONFIGURATION,
            "summary": "Replace a registered client's metadata (RFC 7592 §2.2); the body "
            "repeats client_id, the secret is kept",
            "requestBody": _METADATA_BODY,
            "responses": {
                "200": _json(_INFORMATION, "the client"),
                **_errors(400, 401, 413, 415),
            },
        },
        "delete": {
            **_CONFIGURATION,
            "summary": "Delete a registered client (RFC 7592 §2.3)",
            "responses": {"204": {"description": "deleted"}, **_errors(401)},
        },
    },
}

TOKEN_PATHS: dict[str, Any] = {
    "/api/token": {
        "post": {
            "summary": "Client credentials grant (RFC 6749 §4.4); returns an RFC 9068 JWT",
            "security": [{"clientBasic": []}, {}],
            "requestBody": _form(
                {
                    "grant_type": {"const": "client_credentials"},
                    **_CLIENT_FORM,
                    "scope": {"type": "string"},
                    "audience": {"type": "string"},
                    "resource": {"type": "string"},
                },
                ["grant_type"],
            ),
            "responses": {
                "200": _json({"$ref": "#/components/schemas/TokenResponse"}, "token"),
                **_errors(400, 401, 405, 413, 503),
            },
        }
    },
    "/api/verify": {
        "get": {
            "summary": "Forward-auth for reverse proxies (answers every method alike)",
            "security": [{"bearer": []}],
            "parameters": [
                {"name": "audience", "in": "query", "schema": {"type": "string"}},
                {
                    "name": "scope",
                    "in": "query",
                    "description": "space-separated scopes the token must all grant",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "the token may pass; its identity in X-Auth-Client-Id, "
                    "X-Auth-Scope and X-Auth-Audience"
                },
                **_errors(400, 401, 403, 503),
            },
        }
    },
    "/api/introspect": {
        "post": {
            "summary": "Token introspection (RFC 7662)",
            "security": [{"clientBasic": []}, {}],
            "requestBody": _form({"token": {"type": "string"}, **_CLIENT_FORM}, ["token"]),
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Introspection"}, "introspection"),
                **_errors(400, 401, 413, 503),
            },
        }
    },
    "/api/revoke": {
        "post": {
            "summary": "Revoke one of the caller's own tokens (RFC 7009)",
            "security": [{"clientBasic": []}, {}],
            "requestBody": _form({"token": {"type": "string"}, **_CLIENT_FORM}, ["token"]),
            "responses": {
                "200": {"description": "revoked, or not a valid token"},
                **_errors(400, 401, 413, 503),
            },
        }
    },
    "/api/revocations": {
        "get": {
            "summary": "The revocations in force, for verifiers that check them offline",
            "responses": {
                "200": _json({"$ref": "#/components/schemas/RevocationList"}, "revocations"),
                "304": {"description": "unchanged since the ETag given in If-None-Match"},
                **_errors(503),
            },
        }
    },
    "/api/cert": {
        "get": {
            "summary": "PEM certificates of the signing keys",
            "responses": {"200": {"description": "PEM", "content": {"application/x-pem-file": {}}}},
        }
    },
    "/.well-known/jwks.json": {
        "get": {
            "summary": "JWK Set",
            "responses": {
                "200": {"description": "JWKS", "content": {"application/jwk-set+json": {}}}
            },
        }
    },
    "/.well-known/oauth-authorization-server": {
        "get": {
            "summary": "RFC 8414 metadata",
            "responses": {"200": _json({"type": "object"}, "metadata")},
        }
    },
    "/.well-known/openid-configuration": {
        "get": {
            "summary": "Same metadata",
            "responses": {"200": _json({"type": "object"}, "metadata")},
        }
    },
}

COMMON_PATHS: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json({}, "alive")}}},
    "/readyz": {
        "get": {
            "summary": "Readiness",
            "responses": {"200": _json({}, "ready"), "503": _json({}, "not ready")},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics",
            "responses": {"200": {"description": "text", "content": {"text/plain": {}}}},
        }
    },
    "/openapi.json": {
        "get": {"summary": "This document", "responses": {"200": _json({}, "OpenAPI")}}
    },
}


def openapi_document(serves_tokens: bool, serves_clients: bool, issuer: str) -> dict[str, Any]:
    """The document for a role: only the paths that role routes."""
    paths = {**COMMON_PATHS}
    schemes: dict[str, Any] = {}
    if serves_tokens:
        paths.update(TOKEN_PATHS)
        schemes["clientBasic"] = {"type": "http", "scheme": "basic"}
        schemes["bearer"] = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    if serves_clients:
        paths.update(CLIENT_PATHS)
        paths.update(REGISTRATION_PATHS)
        schemes["adminToken"] = {"type": "http", "scheme": "bearer"}
        schemes["registrationAccessToken"] = {"type": "http", "scheme": "bearer"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "swarm-oauth", "version": __version__},
        "servers": [{"url": issuer}],
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": schemes},
    }
