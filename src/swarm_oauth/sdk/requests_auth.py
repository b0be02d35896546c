"""``RequestsBearerAuth``: the ``requests`` counterpart of ``BearerAuth``.

``session.auth = RequestsBearerAuth(TokenSource.from_env())``. A 401 is retried once
with a fresh token, the way requests' own ``HTTPDigestAuth`` retries: from a response
hook, on the same connection adapter. A streamed body (file, generator) cannot be sent
twice, and a token younger than the source's ``min_token_age`` is not replaced, so such
a request's 401 is returned as is. Importing this module needs requests.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.cookies import extract_cookies_to_jar

from swarm_oauth.sdk.token_source import TokenSource


class RequestsBearerAuth(requests.auth.AuthBase):
    """Attaches the token; on 401 refreshes it and sends the request once more."""

    def __init__(self, source: TokenSource) -> None:
        """Authenticate requests with tokens from ``source``."""
        self.source = source

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """Add the ``Authorization`` header and the hook that retries on 401."""
        request.headers["Authorization"] = f"Bearer {self.source.token()}"
        request.register_hook("response", self._retry_on_401)
        return request

    def _retry_on_401(self, response: requests.Response, **kwargs: Any) -> requests.Response:
        sent = response.request
        if response.status_code != 401 or not isinstance(sent.body, bytes | str | None):
            return response
        # Only a 401 to a request that carried a token of ours says anything about it: a
        # redirect to another host went without it (requests strips it, and may put
        # .netrc's Basic credentials there), and must not be sent the token after all.
        scheme, _, token = str(sent.headers.get("Authorization", "")).partition(" ")
        if scheme != "Bearer" or not self.source.invalidate(token):
            return response
        response.content  # noqa: B018 (read it all so the connection can be reused)
        response.close()
        retry = sent.copy()
        extract_cookies_to_jar(retry._cookies, sent, response.raw)  # type: ignore[attr-defined]
        retry.prepare_cookies(retry._cookies)  # type: ignore[attr-defined]
        retry.headers["Authorization"] = f"Bearer {self.source.token()}"
        second = response.connection.send(retry, **kwargs)
        second.history.append(response)
        second.request = retry
        return second
