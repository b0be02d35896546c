"""An OAuth server's HTTP API as the registry adapters call it: one place that turns
transport failures and status codes into the ports' ``TransientError`` and ``Rejected``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from swarm_oauth.registrar.ports import Rejected, TransientError


class Peer:
    """A pooled HTTP client for one server; errors name the request, never a token."""

    def __init__(self, base_url: str = "", *, timeout: float = 10.0, **client: Any) -> None:
        """``client`` goes to ``httpx.Client`` (``verify=`` for a CA bundle, ...)."""
        self.http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout, **client)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def call(
        self,
        method: str,
        url: str,
        *,
        ok: tuple[int, ...],
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        bearer: str | None = None,
    ) -> httpx.Response:
        """The response when its status is in ``ok``. ``TransientError`` when the server
        cannot be reached, its answer cannot be read, or it answers 429 or 5xx;
        ``Rejected`` for any other status."""
        what = f"{method} {httpx.URL(url).path or url}"
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else None
        try:
            response = self.http.request(method, url, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            # Transport failures, and a body mangled on the way (DecodingError): both may
            # pass, neither says anything about the client.
            raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
        if response.status_code in ok:
            return response
        reason = error_reason(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"{what}: {response.status_code} {reason}")
        raise Rejected(f"{what}: {response.status_code} {reason}")


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The response's body as a JSON object; ``Rejected`` if it is anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise Rejected(f"{response.request.method} {response.request.url.path}: not a JSON object")
    return body


def error_reason(response: httpx.Response) -> str:
    """What an error answer says: an OAuth error (RFC 6749 §5.2, RFC 7591 §3.2.2) or
    Hydra's ``genericError``, else the status line's reason."""
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # Hydra's genericError
            return str(error.get("message") or error.get("reason") or response.reason_phrase)
        return str(body.get("error_description") or error or response.reason_phrase)
    return response.reason_phrase
