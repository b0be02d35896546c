"""``BearerAuth``: an ``httpx.Auth`` that sends this service's token with every request.

On a 401 the token is dropped from the cache (only if it is still the one sent, so a
burst of 401s costs one refresh) and the request is sent once more with a fresh token:
the usual cause is a token that expired in flight or a signing key the receiver has not
seen yet. A token younger than the source's ``min_token_age`` is not dropped and its
401 is returned as is: a fresh token would be refused for the same reason.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

import httpx

from swarm_oauth.sdk.token_source import TokenSource


class BearerAuth(httpx.Auth):
    """Works with both ``httpx.Client`` and ``httpx.AsyncClient``."""

    # The body is kept so that the retry after a 401 can send it again.
    requires_request_body = True

    def __init__(self, source: TokenSource) -> None:
        """Authenticate requests with tokens from ``source``."""
        self.source = source

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        """Send with the current token; on 401 refresh it (unless it is too young) and send
        once more."""
        token = self.source.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if _refuses(response, token) and self.source.invalidate(token):
            request.headers["Authorization"] = f"Bearer {self.source.token()}"
            yield request

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """Like ``sync_auth_flow`` without blocking the event loop."""
        token = await self.source.atoken()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if _refuses(response, token) and self.source.invalidate(token):
            request.headers["Authorization"] = f"Bearer {await self.source.atoken()}"
            yield request


def _refuses(response: httpx.Response, token: str) -> bool:
    """Whether ``response`` is a 401 to ``token`` itself: not one from the end of a
    redirect to another origin, which httpx sends without the token (a valid token would
    be dropped, and fetched again, at every call)."""
    return (
        response.status_code == 401
        and response.request.headers.get("Authorization") == f"Bearer {token}"
    )
