"""The clients role's admin API over HTTP: what ``swarm-oauth clients`` and the registrar
both speak, with the admin bearer token.

It returns the API's JSON as it is; callers turn it into what they need (the command
prints it, the registrar makes ``ClientInfo`` of it).
"""

from __future__ import annotations

import builtins
import ssl
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from swarm_oauth.identifiers import NO_CLIENT, path_segment

JSON = dict[str, Any]


class AdminAPIError(Exception):
    """The API answered with an unexpected status; ``body`` is its JSON error, if any."""

    def __init__(self, what: str, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        self.reason = _reason(body) or "no reason given"
        super().__init__(f"{what}: {status} {self.reason}")

    @property
    def transient(self) -> bool:
        """Whether retrying later may succeed (the API is overloaded or down)."""
        return self.status >= 500 or self.status == 429


class AdminAPIUnreachable(Exception):
    """No HTTP answer came back (connection refused, timeout, TLS failure)."""


def ca_context(ca_bundle: Path) -> ssl.SSLContext:
    """A client TLS context that trusts the CAs of ``ca_bundle`` (PEM) and no others."""
    return ssl.create_default_context(cafile=str(ca_bundle))


class AdminClient:
    """``/api/clients/*`` of ``base_url``; the admin token goes in every request."""

    def __init__(
        self,
        base_url: str,
        admin_token: str,
        *,
        timeout: float = 10.0,
        ca_bundle: Path | None = None,
        **client: Any,
    ) -> None:
        """``ca_bundle``: a PEM file of the CAs an https ``base_url`` is checked against
        (default: the system's). ``client`` is passed to ``httpx.Client``."""
        self.base_url = base_url.rstrip("/")
        if ca_bundle is not None:
            client["verify"] = ca_context(ca_bundle)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
            **client,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the API, one method per route ---------------------------------------------------

    def get(self, client_id: str) -> JSON | None:
        """One client's record, or None when there is none."""
        return self._about_client("GET", f"/api/clients/{path_segment(client_id)}")

    def list(self) -> list[JSON]:
        """Every client's record, following the API's pages to the last."""
        records: builtins.list[JSON] = []
        for page in self.pages():
            records.extend(page)
        return records

    def pages(self, limit: int | None = None) -> Iterator[builtins.list[JSON]]:
        """The clients a page at a time (``limit`` per page; None: the API's default)."""
        params: dict[str, Any] = {} if limit is None else {"limit": limit}
        while True:
            body = _object(self.call("GET", "/api/clients", ok=(200,), params=params))
            clients = body.get("clients")
            yield [c for c in clients if isinstance(c, dict)] if isinstance(clients, list) else []
            following = body.get("next_cursor")
            if not isinstance(following, str) or not following:
                return
            params = {**params, "cursor": following}

    def add(
        self,
        client_id: str,
        scopes: Sequence[str] = (),
        audiences: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> JSON | None:
        """Register a client: its record with ``client_secret``; None if the id is taken."""
        body: JSON = {"client_id": client_id, "scopes": list(scopes), "audiences": list(audiences)}
        if metadata is not None:
            body["metadata"] = dict(metadata)
        response = self.call("POST", "/api/clients/add", json=body, ok=(201, 409))
        return None if response.status_code == 409 else _object(response)

    def remove(self, client_id: str) -> bool:
        """Remove a client; False when it was already gone."""
        body = {"client_id": client_id}
        return self._about_client("POST", "/api/clients/remove", body) is not None

    def rotate(
        self, client_id: str, grace_seconds: int = 0, *, replace_current: bool = False
    ) -> JSON | None:
        """A new secret (in ``client_secret``); the old one works ``grace_seconds`` longer
        (with ``replace_current``: the current one is discarded, the previous one keeps
        its grace). None when the client is unknown."""
        body: JSON = {"client_id": client_id, "grace_seconds": grace_seconds}
        if replace_current:
            body["replace_current"] = True
        return self._about_client("POST", "/api/clients/rotate", body)

    def update(
        self,
        client_id: str,
        scopes: Sequence[str] | None = None,
        audiences: Sequence[str] | None = None,
    ) -> JSON | None:
        """Replace what a client may ask for (the fields given), keeping its secret; None
        when the client is unknown."""
        body: JSON = {"client_id": client_id}
        if scopes is not None:
            body["scopes"] = list(scopes)
        if audiences is not None:
            body["audiences"] = list(audiences)
        return self._about_client("POST", "/api/clients/update", body)

    def revoke_tokens(self, client_id: str) -> JSON | None:
        """Revoke every token issued to a client until now: the answer names the instant
        (``issued_before``). None when the client is unknown."""
        body = {"client_id": client_id}
        return self._about_client("POST", "/api/clients/revoke-tokens", body)

    # -- transport -----------------------------------------------------------------------

    def _about_client(self, method: str, path: str, body: JSON | None = None) -> JSON | None:
        """The answer of a route about one client; None when the clients API says it has
        no such client. Any other 404 (a proxy's page, a route an older server lacks) is
        an ``AdminAPIError``: it says nothing of the client."""
        response = self.call(method, path, json=body, ok=(200, 404))
        if response.status_code != 404:
            return _object(response)
        answer = _json(response)
        if isinstance(answer, dict) and answer.get("error_description") == NO_CLIENT:
            return None
        raise AdminAPIError(
            f"{method} {path}",
            404,
            {"error_description": "not found, and not a client: is the URL the clients API?"},
        )

    def send(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        """Send one request and return whatever the API answered."""
        try:
            return self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise AdminAPIUnreachable(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    def call(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...],
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request; ``AdminAPIError`` unless the status is in ``ok``."""
        response = self.send(method, path, json=json, params=params)
        if response.status_code not in ok:
            raise AdminAPIError(f"{method} {path}", response.status_code, _json(response))
        return response


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _object(response: httpx.Response) -> JSON:
    body = _json(response)
    if not isinstance(body, dict):
        raise AdminAPIError(
            f"{response.request.method} {response.request.url.path}",
            response.status_code,
            {"error_description": "the answer is not a JSON object: is the URL the clients API?"},
        )
    return body


def _reason(body: Any) -> str:
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or "")
    return ""
