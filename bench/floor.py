"""The floor: the least a Python token endpoint on Starlette can cost.

A Starlette app whose ``POST /api/token`` reads the body, decodes it with
``urllib.parse.parse_qsl`` and answers with one constant, prebuilt token response: HTTP
parsing, routing, form decoding and a response, and nothing else. ``request.form()``
(python-multipart) would cost several times what the token route spends decoding its
form, and so flatter every ratio taken against the floor. Served by
``uvicorn bench.floor:app`` (uvloop, httptools).
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _prebuilt_body() -> bytes:
    # A real ES256 access token of our claim shape, so the response is as large as ours.
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": "http://127.0.0.1:8080",
            "sub": "bench",
            "client_id": "bench",
            "aud": "http://127.0.0.1:8080",
            "iat": now,
            "exp": now + 900,
            "jti": "AAAAAAAAAAAAAAAAAAAAAA",
        },
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": "k" * 43, "typ": "at+jwt"},
    )
    body = {"access_token": token, "token_type": "Bearer", "expires_in": 900, "scope": ""}
    return json.dumps(body, separators=(",", ":")).encode()


BODY = _prebuilt_body()
HEADERS = {"cache-control": "no-store", "pragma": "no-cache"}


async def token(request: Request) -> Response:
    """Read the form, as any token endpoint must, and return the constant token."""
    form = dict(parse_qsl((await request.body()).decode()))
    if form.get("grant_type") != "client_credentials":
        return Response(b'{"error":"unsupported_grant_type"}', 400, media_type="application/json")
    return Response(BODY, headers=HEADERS, media_type="application/json")


app = Starlette(routes=[Route("/api/token", token, methods=["POST"])])
