"""The ``ClientRegistry`` port over HTTP: the token server's clients API, as its admin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from swarm_oauth.registrar.model import ClientInfo, IssuedSecret
from swarm_oauth.registrar.ports import Rejected, TransientError

_PROBE_CLIENT = "swarm-oauth-registrar-readiness-probe"


class ClientsAPI:
    """``/api/clients/*`` of ``base_url`` with the bearer admin token.

    Connection failures, timeouts and 5xx raise ``TransientError``; any other unexpected
    answer raises ``Rejected`` with the API's error description (never a secret).
    """

    def __init__(
        self, base_url: str, admin_token: str, *, timeout: float = 10.0, **client: Any
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {admin_token}"},
            timeout=timeout,
            **client,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, client_id: str) -> ClientInfo | None:
        """The client's record, or None."""
        response = self._call("GET", f"/api/clients/{client_id}", ok=(200, 404))
        return None if response.status_code == 404 else _client(response.json())

    def list(self) -> list[ClientInfo]:
        """Every client."""
        body = self._call("GET", "/api/clients", ok=(200,)).json()
        return [_client(item) for item in body["clients"]]

    def add(
        self,
        client_id: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> IssuedSecret:
        """Register a client; ``TransientError`` if the id was taken meanwhile (409)."""
        body = {
            "client_id": client_id,
            "scopes": list(scopes),
            "audiences": list(audiences),
            "metadata": dict(metadata),
        }
        response = self._call("POST", "/api/clients/add", json=body, ok=(201, 409))
        if response.status_code == 409:
            raise TransientError(f"client {client_id} was added by someone else meanwhile")
        return _issued(response.json())

    def remove(self, client_id: str) -> bool:
        """Remove a client; False if it was already gone."""
        body = {"client_id": client_id}
        response = self._call("POST", "/api/clients/remove", json=body, ok=(200, 404))
        return response.status_code == 200

    def rotate(self, client_id: str) -> IssuedSecret:
        """A new secret; the previous one stops at once (no Docker secret holds it)."""
        body = {"client_id": client_id, "grace_seconds": 0}
        response = self._call("POST", "/api/clients/rotate", json=body, ok=(200, 404))
        if response.status_code == 404:
            raise TransientError(f"client {client_id} was removed by someone else meanwhile")
        return _issued(response.json())

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        """Replace the client's scopes and audiences; its secret stays."""
        body = {"client_id": client_id, "scopes": list(scopes), "audiences": list(audiences)}
        response = self._call("POST", "/api/clients/update", json=body, ok=(200, 404))
        if response.status_code == 404:
            raise TransientError(f"client {client_id} was removed by someone else meanwhile")
        return _client(response.json())

    def ping(self) -> None:
        """Raise unless the API answers and accepts the admin token."""
        self._call("GET", f"/api/clients/{_PROBE_CLIENT}", ok=(200, 404))

    def _call(
        self, method: str, path: str, *, ok: tuple[int, ...], json: Any = None
    ) -> httpx.Response:
        what = f"{method} {path}"
        try:
            response = self._http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise TransientError(f"{what}: {type(exc).__name__}") from None
        if response.status_code in ok:
            return response
        reason = _reason(response)
        if response.status_code >= 500 or response.status_code == 429:
            raise TransientError(f"{what}: {response.status_code} {reason}")
        raise Rejected(f"{what}: {response.status_code} {reason}")


def _client(body: Mapping[str, Any]) -> ClientInfo:
    metadata = body.get("metadata")
    return ClientInfo(
        client_id=str(body["client_id"]),
        secret_version=int(body.get("secret_version", 1)),
        metadata=metadata if isinstance(metadata, dict) else {},
        scopes=tuple(body.get("scopes") or ()),
        audiences=tuple(body.get("audiences") or ()),
    )


def _issued(body: Mapping[str, Any]) -> IssuedSecret:
    return IssuedSecret(_client(body), str(body["client_secret"]))


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("error_description") or body.get("error") or response.reason_phrase)
    return response.reason_phrase
