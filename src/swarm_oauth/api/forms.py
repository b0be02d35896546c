"""What the form endpoints share (token, introspection, revocation): the body's media type
and parsing, and the calling client's authentication against the cached client records."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from swarm_oauth.runtime import Runtime
from swarm_oauth.store import ClientRecord, StoreError, StoreRejected
from swarm_oauth.tokens import OAuthError, TokenRequest, parse_form
from swarm_oauth.tokens.grant import authenticate, client_credentials, invalid_client

FORM_TYPE = "application/x-www-form-urlencoded"


def form_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """The ``Content-Type`` and ``Authorization`` of a form request (raw ASGI headers);
    ``invalid_request`` when either comes twice: which one counts would be a guess, and a
    proxy and this server could guess differently."""
    content_type = authorization = None
    for name, value in headers:
        if name == b"content-type":
            if content_type is not None:
                raise OAuthError("invalid_request", "the Content-Type header is repeated")
            content_type = value.decode("latin-1")
        elif name == b"authorization":
            if authorization is not None:
                raise OAuthError("invalid_request", "the Authorization header is repeated")
            authorization = value.decode("latin-1")
    return content_type, authorization


def form_of(content_type: str | None, body: bytes) -> dict[str, list[str]]:
    """The parameters of a form body; ``invalid_request`` for another media type."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_TYPE:
        raise OAuthError("invalid_request", f"Content-Type must be {FORM_TYPE}")
    return parse_form(body)


def cached_client(runtime: Runtime, client_id: str) -> tuple[bool, ClientRecord | None]:
    """Whether the cache knows ``client_id``, and its record (``None``: no such client);
    503 when the store cannot vouch for what is cached."""
    if not runtime.watcher.fresh():
        raise OAuthError("temporarily_unavailable", "the client store cannot be reached", 503)
    return runtime.client_cache.peek(client_id)


async def load_client(runtime: Runtime, client_id: str) -> ClientRecord | None:
    """The client's record from the cache, else the store (off the event loop); 503 when
    the store cannot vouch for what is cached or cannot be reached."""
    cached, client = cached_client(runtime, client_id)
    if cached:
        return client
    return await reloaded_client(runtime, client_id)


async def reloaded_client(runtime: Runtime, client_id: str) -> ClientRecord | None:
    """The client's record as the store has it now (off the event loop), not the cache's;
    503 when the store cannot be reached."""
    try:
        return await asyncio.to_thread(runtime.client_cache.load, client_id)
    except StoreRejected:
        # The store cannot even hold this id, so no client has it; an outage it is not,
        # and answering 503 would let anyone make the server look down.
        raise invalid_client() from None
    except StoreError:
        raise OAuthError(
            "temporarily_unavailable", "the client store cannot be reached", 503
        ) from None


async def authenticated_client(
    runtime: Runtime, form: dict[str, list[str]], authorization: str | None
) -> ClientRecord:
    """The client whose credentials came with the request (Basic or in the form), as the
    token endpoint authenticates it; ``invalid_client`` otherwise."""
    client_id, secret = client_credentials(form, authorization)
    client = await load_client(runtime, client_id)
    return authenticate(TokenRequest(client_id, secret, None, None), client, time.time())
