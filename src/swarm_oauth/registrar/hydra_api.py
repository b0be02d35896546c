"""The ``ClientRegistry`` port on Ory Hydra's admin API (``/admin/clients``).

Hydra lets the registrar choose client ids and records audiences and free-form metadata,
so the reconcile works as with the builtin API. Two differences:

- A rotated-out secret keeps working until ``DELETE /admin/clients/{id}/secrets/rotate``
  (``Capabilities.retire_on_request``): the registrar calls it once no task uses the old
  secret. That a client holds such secrets is recorded in its metadata before the
  rotation, so a registrar that crashes in between still retires them later.
- Managed clients are found by their metadata (and listed with Hydra's ``owner`` filter),
  never by an id pattern; ``GET /admin/clients`` is followed page by page through its
  ``Link`` header.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import httpx

from swarm_oauth.identifiers import path_segment
from swarm_oauth.registrar.http_peer import Peer, json_object
from swarm_oauth.registrar.model import MANAGED_BY, ClientInfo, FreshSecret
from swarm_oauth.registrar.ports import Capabilities, Rejected, TransientError

# Hydra's owner field: lets GET /admin/clients list only the registrar's clients.
OWNER = MANAGED_BY
PAGE_SIZE = 500
# In a client's metadata: it holds rotated-out secrets that still work; and which
# generation its secret is (Hydra counts none; the Docker secret is labelled with it).
HOLDS_ROTATED = "holds_rotated_secrets"
SECRET_VERSION = "secret_version"
NO_ROTATION = (
    "this Hydra has no /admin/clients/{id}/secrets/rotate (it answered 404 for a client "
    "it has): rotating a secret needs a Hydra with secret rotation (docs/backends.md)"
)


class HydraAdmin:
    """Ory Hydra's admin API as the registrar's client registry."""

    capabilities = Capabilities(chosen_ids=True, audiences=True, retire_on_request=True)

    def __init__(self, admin_url: str, **client: Any) -> None:
        """``client`` goes to ``Peer`` (``timeout=``, ``verify=`` for a CA bundle, ...)."""
        self._peer = Peer(admin_url, **client)

    def close(self) -> None:
        """Close the connection pool."""
        self._peer.close()

    def find(self, name: str, service_id: str) -> ClientInfo | None:
        """The client whose id is ``name`` (ids are chosen here), whoever's it is."""
        return self.get(name)

    def get(self, client_id: str) -> ClientInfo | None:
        """The client's record, or None."""
        response = self._peer.call("GET", _path(client_id), ok=(200, 404))
        return None if response.status_code == 404 else _client(json_object(response))

    def list(self) -> list[ClientInfo]:
        """The clients this registrar registered (Hydra's owner filter, then metadata)."""
        found = [_client(item) for item in self._pages({"owner": OWNER})]
        return [client for client in found if client.managed]

    def add(
        self,
        name: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> FreshSecret:
        """Create the client; ``TransientError`` if its id was taken meanwhile (409)."""
        body = _body(name, scopes, audiences, {**metadata, SECRET_VERSION: 1})
        response = self._peer.call("POST", "/admin/clients", json=body, ok=(201, 409))
        if response.status_code == 409:
            raise TransientError(f"client {name} was added by someone else meanwhile")
        return _fresh(json_object(response))

    def remove(self, client_id: str) -> bool:
        """Delete the client; False if it was already gone."""
        response = self._peer.call("DELETE", _path(client_id), ok=(204, 404))
        return response.status_code == 204

    def rotate(
        self, client_id: str, grace_seconds: int = 0, *, replace_current: bool = False
    ) -> FreshSecret:
        """A new secret; Hydra keeps the old ones working until ``retire_previous``
        (``grace_seconds`` and ``replace_current`` are the reconcile's to act on)."""
        current = self._existing(client_id)
        # Recorded first: a crash right after the rotation must not leave working old
        # secrets that nobody knows to retire (and a crash before it, a version ahead of
        # the Docker secret, only makes the next run rotate once more).
        version = current.secret_version + 1
        self._patch(current, {**current.metadata, HOLDS_ROTATED: True, SECRET_VERSION: version})
        response = self._peer.call("POST", f"{_path(client_id)}/secrets/rotate", ok=(200, 404))
        if response.status_code == 404:
            self._raise_if_removed(client_id)
            # Undo the record, or every try would count another version.
            self._patch(current, current.metadata)
            raise Rejected(NO_ROTATION)
        return _fresh(json_object(response))

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        """Replace the client's scopes and audiences (its secret stays)."""
        current = self._existing(client_id)
        return self._patch(current, current.metadata, scopes, audiences)

    def retire_previous(self, client_id: str) -> bool:
        """Make the rotated-out secrets stop working, and record that none is left."""
        current = self._existing(client_id)
        if not current.metadata.get(HOLDS_ROTATED):
            return False
        # A 404 here is no success: the client gone meanwhile, or the route missing.
        response = self._peer.call(
            "DELETE", f"{_path(client_id)}/secrets/rotate", ok=(200, 204, 404)
        )
        if response.status_code == 404:
            self._raise_if_removed(client_id)
            raise Rejected(NO_ROTATION)
        metadata = {k: v for k, v in current.metadata.items() if k != HOLDS_ROTATED}
        self._patch(current, metadata)
        return True

    def ping(self) -> None:
        """Raise unless the admin API answers."""
        self._peer.call("GET", "/admin/clients", params={"page_size": 1}, ok=(200,))

    # -- plumbing ------------------------------------------------------------------------

    def _raise_if_removed(self, client_id: str) -> None:
        """After a 404 from a rotation route: ``TransientError`` if the client went
        meanwhile. If it is still there, the route is missing (a Hydra older than secret
        rotation), which the caller refuses."""
        if self.get(client_id) is None:
            raise TransientError(f"client {client_id} was removed by someone else meanwhile")

    def _existing(self, client_id: str) -> ClientInfo:
        client = self.get(client_id)
        if client is None:
            raise TransientError(f"client {client_id} was removed by someone else meanwhile")
        return client

    def _patch(
        self,
        client: ClientInfo,
        metadata: Mapping[str, Any],
        scopes: Sequence[str] | None = None,
        audiences: Sequence[str] | None = None,
    ) -> ClientInfo:
        """Set the fields the registrar defines (JSON Patch, RFC 6902), and only those: a
        PUT would reset everything else an operator set on the client (its token
        lifespans, its access token strategy) at every rotation."""
        body = _body(
            client.client_id,
            client.scopes if scopes is None else scopes,
            client.audiences if audiences is None else audiences,
            metadata,
        )
        # "add" sets a member whether or not it is there yet ("replace" needs it there).
        patch = [
            {"op": "add", "path": f"/{name}", "value": value}
            for name, value in body.items()
            if name != "client_id"
        ]
        response = self._peer.call("PATCH", _path(client.client_id), json=patch, ok=(200, 404))
        if response.status_code == 404:
            raise TransientError(f"client {client.client_id} was removed by someone else")
        return _client(json_object(response))

    def _pages(self, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of ``GET /admin/clients``, page after page (``Link: rel="next"``)."""
        query: dict[str, Any] = {**params, "page_size": PAGE_SIZE}
        while True:
            response = self._peer.call("GET", "/admin/clients", params=query, ok=(200,))
            try:
                items = response.json()
            except ValueError:  # a proxy's login page, a wrong URL
                items = None
            if not isinstance(items, list):
                raise Rejected("GET /admin/clients: the answer is not a list")
            yield from (item for item in items if isinstance(item, dict))
            following = response.links.get("next", {}).get("url")
            token = httpx.URL(following).params.get("page_token") if following else None
            if not token or not items:
                return
            query = {**params, "page_size": PAGE_SIZE, "page_token": token}


def _path(client_id: str) -> str:
    return f"/admin/clients/{path_segment(client_id)}"


def _body(
    client_id: str,
    scopes: Sequence[str],
    audiences: Sequence[str],
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    """A client for the client credentials grant only, as the registrar registers it."""
    return {
        "client_id": client_id,
        "client_name": client_id,
        "owner": OWNER,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": " ".join(scopes),
        "audience": list(audiences),
        "metadata": dict(metadata),
    }


def _client(body: Mapping[str, Any]) -> ClientInfo:
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    scope = body.get("scope")
    audience = body.get("audience")
    version = metadata.get(SECRET_VERSION)
    return ClientInfo(
        client_id=str(body.get("client_id", "")),
        secret_version=version if isinstance(version, int) and version > 0 else 1,
        metadata=metadata,
        scopes=tuple(scope.split()) if isinstance(scope, str) else (),
        audiences=tuple(a for a in audience if isinstance(a, str))
        if isinstance(audience, list)
        else (),
        previous_secret_expires_at=math.inf if metadata.get(HOLDS_ROTATED) else None,
    )


def _fresh(body: Mapping[str, Any]) -> FreshSecret:
    secret = body.get("client_secret")
    if not isinstance(secret, str) or not secret:
        raise Rejected("Hydra answered without a client_secret")
    return FreshSecret(_client(body), secret)
