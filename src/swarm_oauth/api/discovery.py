"""What verifiers fetch: the JWKS, the certificates and the RFC 8414 metadata."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from swarm_oauth.api.registration import REGISTER_PATH
from swarm_oauth.clients.registration import AUTH_METHODS
from swarm_oauth.runtime import Runtime

# Verifiers may cache these for a while; a new key is published ahead of use (see
# keys.keyring), so a short max-age costs nothing and keeps rotation quick.
PUBLIC_CACHE = {"Cache-Control": "public, max-age=60"}
CLIENT_AUTH_METHODS = list(AUTH_METHODS)
WELL_KNOWN_METADATA = "/.well-known/oauth-authorization-server"


def metadata(runtime: Runtime) -> dict[str, Any]:
    """RFC 8414 authorization server metadata for the client credentials grant."""
    issuer = runtime.settings.issuer_url
    document = {
        "issuer": issuer,
        "token_endpoint": f"{issuer}/api/token",
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "grant_types_supported": ["client_credentials"],
        # There is no authorization endpoint, hence no response types; the two OpenID
        # fields are there because discovery clients that read openid-configuration
        # reject a document without them.
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint": f"{issuer}/api/introspect",
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint": f"{issuer}/api/revoke",
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": runtime.keyring.algorithms(time.time()),
    }
    # Only where this process also serves the clients role (all): a tokens process cannot
    # tell at which URL the clients role, on the management network, is reachable.
    if runtime.settings.serves_clients:
        document["registration_endpoint"] = f"{issuer}{REGISTER_PATH}"
    return document


def discovery_routes(runtime: Runtime) -> list[Route]:
    """``/.well-known/*`` and ``/api/cert``."""

    async def jwks(_: Request) -> Response:
        """The public keys that validate tokens (RFC 7517), with their certificates."""
        return JSONResponse(
            runtime.keyring.jwks(time.time()),
            headers=PUBLIC_CACHE,
            media_type="application/jwk-set+json",
        )

    async def cert(_: Request) -> Response:
        """The PEM certificates of the published keys, the one signing now first."""
        return Response(
            runtime.keyring.certificates_pem(time.time()),
            headers=PUBLIC_CACHE,
            media_type="application/x-pem-file",
        )

    async def server_metadata(_: Request) -> Response:
        """RFC 8414 metadata (also served where OpenID Connect clients look)."""
        return JSONResponse(metadata(runtime), headers=PUBLIC_CACHE)

    # RFC 8414 §3.1: an issuer with a path (a server behind a proxy under a prefix) has its
    # metadata at the well-known suffix followed by that path, which a proxy routes here
    # as it is; OpenID Connect's location is under the issuer, so prefix-stripped.
    issuer_path = urlsplit(runtime.settings.issuer_url).path.rstrip("/")
    return [
        Route("/api/cert", cert, methods=["GET"]),
        Route("/.well-known/jwks.json", jwks, methods=["GET"]),
        *(
            Route(f"{WELL_KNOWN_METADATA}{path}", server_metadata, methods=["GET"])
            for path in dict.fromkeys(["", issuer_path])
        ),
        Route("/.well-known/openid-configuration", server_metadata, methods=["GET"]),
    ]
