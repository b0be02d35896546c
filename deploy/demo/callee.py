"""Demo callee: answers who called it, and only callers with a valid token for it.

Every request but /healthz needs a bearer token issued by OAUTH_ISSUER whose audience is
CALLEE_AUDIENCE (default ``callee``); the SDK's middleware checks it against the issuer's
JWKS and puts the claims on the request.
"""

from __future__ import annotations

import os

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from swarm_oauth.sdk import BearerTokenMiddleware, Verifier


async def who_called(request: Request) -> JSONResponse:
    """The verified identity of the caller."""
    claims = request.state.token_claims
    return JSONResponse(
        {"caller": claims["sub"], "audience": claims["aud"], "scope": claims.get("scope", "")}
    )


async def healthz(request: Request) -> JSONResponse:
    """Alive (the image's health check asks for this)."""
    return JSONResponse({"status": "ok"})


def create_app() -> Starlette:
    """The callee's ASGI app, configured from the environment."""
    verifier = Verifier(
        issuer=os.environ["OAUTH_ISSUER"], audience=os.environ.get("CALLEE_AUDIENCE", "callee")
    )
    return Starlette(
        routes=[Route("/", who_called), Route("/healthz", healthz)],
        middleware=[
            Middleware(BearerTokenMiddleware, verifier=verifier, exempt_paths={"/healthz"})
        ],
    )


if __name__ == "__main__":
    uvicorn.run(create_app(), host="0.0.0.0", port=int(os.environ.get("SWARM_OAUTH_PORT", "8080")))
