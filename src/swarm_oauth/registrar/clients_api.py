"""The ``ClientRegistry`` port on the token server's clients API (``AdminClient``)."""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NoReturn

from swarm_oauth.admin_client import AdminAPIError, AdminAPIUnreachable, AdminClient
from swarm_oauth.registrar.model import ClientInfo, FreshSecret
from swarm_oauth.registrar.ports import Capabilities, Rejected, TransientError

_PROBE_CLIENT = "swarm-oauth-registrar-readiness-probe"


class ClientsAPI:
    """The builtin clients API as the registrar's client registry: the registrar chooses
    client ids, clients carry audiences, and a rotation's grace is a time.

    Connection failures, timeouts, 429 and 5xx raise ``TransientError``; any other
    unexpected answer raises ``Rejected`` with the API's error description (never a secret).
    """

    capabilities = Capabilities()

    def __init__(self, base_url: str, admin_token: str, **client: Any) -> None:
        """``client`` goes to ``AdminClient`` (``timeout``, ``verify``, ``transport``...)."""
        self._api = AdminClient(base_url, admin_token, **client)

    def close(self) -> None:
        """Close the connection pool."""
        self._api.close()

    def find(self, name: str, service_id: str) -> ClientInfo | None:
        """The client whose id is ``name`` (ids are chosen here), whoever's it is."""
        return self.get(name)

    def get(self, client_id: str) -> ClientInfo | None:
        """The client's record, or None."""
        with _translated():
            body = self._api.get(client_id)
        return None if body is None else _client(body)

    def list(self) -> list[ClientInfo]:
        """Every client."""
        with _translated():
            return [_client(item) for item in self._api.list()]

    def add(
        self,
        client_id: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> FreshSecret:
        """Register a client; ``TransientError`` if the id was taken meanwhile (409)."""
        with _translated():
            body = self._api.add(client_id, scopes, audiences, metadata)
        if body is None:
            raise TransientError(f"client {client_id} was added by someone else meanwhile")
        return _fresh(body)

    def remove(self, client_id: str) -> bool:
        """Remove a client; False if it was already gone."""
        with _translated():
            return self._api.remove(client_id)

    def rotate(
        self, client_id: str, grace_seconds: int = 0, *, replace_current: bool = False
    ) -> FreshSecret:
        """A new secret; the previous one works ``grace_seconds`` longer (or, with
        ``replace_current``, keeps the grace it has)."""
        with _translated():
            body = self._api.rotate(client_id, grace_seconds, replace_current=replace_current)
        if body is None:
            _vanished(client_id)
        return _fresh(body)

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        """Replace the client's scopes and audiences; its secret stays."""
        with _translated():
            body = self._api.update(client_id, scopes, audiences)
        if body is None:
            _vanished(client_id)
        return _client(body)

    def retire_previous(self, client_id: str) -> bool:
        """Nothing to do: a rotated-out secret here stops when its grace ends."""
        return False

    def ping(self) -> None:
        """Raise unless the API answers and accepts the admin token."""
        with _translated():
            self._api.get(_PROBE_CLIENT)


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """``AdminClient``'s errors as the port's: transient or rejected."""
    try:
        yield
    except AdminAPIUnreachable as exc:
        raise TransientError(str(exc)) from None
    except AdminAPIError as exc:
        raise (TransientError if exc.transient else Rejected)(str(exc)) from None


def _vanished(client_id: str) -> NoReturn:
    raise TransientError(f"client {client_id} was removed by someone else meanwhile")


def _client(body: Mapping[str, Any]) -> ClientInfo:
    metadata = body.get("metadata")
    return ClientInfo(
        client_id=str(body["client_id"]),
        secret_version=int(body.get("secret_version", 1)),
        metadata=metadata if isinstance(metadata, dict) else {},
        scopes=tuple(body.get("scopes") or ()),
        audiences=tuple(body.get("audiences") or ()),
        previous_secret_expires_at=_epoch(body.get("previous_secret_expires_at")),
    )


def _epoch(value: Any) -> float | None:
    """The API's ``YYYY-MM-DDTHH:MM:SSZ`` as Unix time; None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        return (
            datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
            .replace(tzinfo=datetime.UTC)
            .timestamp()
        )
    except ValueError:
        return None


def _fresh(body: Mapping[str, Any]) -> FreshSecret:
    return FreshSecret(_client(body), str(body["client_secret"]))
