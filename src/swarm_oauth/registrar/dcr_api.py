"""The ``ClientRegistry`` port on OAuth 2.0 Dynamic Client Registration (RFC 7591) and
its management protocol (RFC 7592), for any server that implements both.

Such a server picks each client's id and lists nothing back, so the registrar keeps a
record of every registration (``registrations``): which service it is for, under which
name, and the registration access token that alone lets it read, update or delete the
client. What follows from that:

- ``find`` asks the server about the newest record of a name (``GET`` on the client's
  configuration URL); a server that answers 401 no longer has the client (RFC 7592 §2.1),
  and the record goes. A server may answer a read or an update with a new registration
  access token (the old one then spent) or a new secret (the old one then ended): both are
  recorded before anything else, a new secret as the client's next secret version, which
  the reconcile then mounts (``rotate`` hands it over without asking for another).
- Calls about one client take turns, and a renewed token the book could not store is
  kept in memory until it can be: with a server that spends the token at each use, two
  calls at once, or one lost write, would leave the registrar with a spent token, whose
  401 reads as the client gone.
- Rotation first asks for a new secret the way RFC 7592 allows, an update (``PUT``); a
  server may answer it with a new secret. Most keep the secret (RFC 7592 gives a client no
  way to demand one), and then the service is registered anew: a new client id and secret,
  while the previous client keeps working until ``retire_previous`` deletes it, once no
  task uses its secret (``Capabilities.retire_on_request``).
- Clients carry no audiences (RFC 7591 defines none); the reconcile refuses a service that
  asks for them rather than drop them silently.

The window the protocol leaves open: the server's answer to a registration is the only
time the registration access token is seen, so a registrar killed between that answer and
writing the record leaves a client that only the server's administrator can delete. A
server that answers registrations in a way that leaves such a client (no configuration
URL the registrar may use) would do so at every try: registrations then wait
``REFUSAL_HOLD`` before the next.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import httpx

from swarm_oauth import __version__
from swarm_oauth.durations import format_duration
from swarm_oauth.registrar.http_peer import Peer, json_object
from swarm_oauth.registrar.locks import KeyedLocks
from swarm_oauth.registrar.model import ClientInfo, FreshSecret
from swarm_oauth.registrar.ports import Capabilities, RegistrarError, Rejected, TransientError
from swarm_oauth.registrar.registrations import (
    Credentials,
    Registration,
    RegistrationBook,
    secret_digest,
)

SOFTWARE_ID = "swarm-oauth-registrar"
# Answers of a client configuration endpoint that mean the client is gone (RFC 7592 §2.1:
# 401 for a client that does not exist; 404 from servers that say it otherwise). A 403 is
# a permission the token lacks (§2.1 too): an error, never a reason to drop the record.
GONE = (401, 404)
# The methods that authenticate with the client secret the registrar hands out.
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
# After a registration the server made but the registrar cannot manage (nor delete), how
# long registrations wait: each try would leave one more client (one a full pass).
REFUSAL_HOLD = 15 * 60.0


class DynamicRegistration:
    """An RFC 7591/7592 server as the registrar's client registry."""

    capabilities = Capabilities(chosen_ids=False, audiences=False, retire_on_request=True)

    def __init__(
        self,
        registration_url: str,
        book: RegistrationBook,
        *,
        initial_access_token: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        **client: Any,
    ) -> None:
        """``client`` goes to ``Peer`` (``timeout=``, ``verify=`` for a CA bundle, ...)."""
        self._url = registration_url
        # What errors name, as the peer's do: never a user:password@ or a query.
        self._path = httpx.URL(registration_url).path or "/"
        self._book = book
        self._initial_token = initial_access_token
        self._peer = Peer(**client)
        # Two calls about one client at once (a removed service's key and its client's
        # key, on two workers) with a token the server spends at each use: one of them
        # would send a spent token.
        self._clients = KeyedLocks()
        # Guards the two memos below, which calls about different clients share.
        self._memo = threading.Lock()
        # What an answer renewed that the book could not store (a Docker error), by client
        # id, with the generation of the record it follows: the only copy of a new
        # registration access token, used until a later write stores it.
        self._unwritten: dict[str, tuple[int, Registration, Credentials]] = {}
        # A secret the server issued unasked, in a read or an update answer, by client id,
        # until ``rotate`` hands it to the reconcile.
        self._issued: dict[str, str] = {}
        self._clock = clock
        # Until when registrations wait, and why (see ``REFUSAL_HOLD``).
        self._hold: tuple[float, str] | None = None

    def close(self) -> None:
        """Close the connection pool."""
        self._peer.close()

    def find(self, name: str, service_id: str) -> ClientInfo | None:
        """The newest client registered for the service under ``name`` that the server
        still has; records of clients it no longer has are dropped."""
        records = self._book.of(name, service_id)
        for index, record in enumerate(records):
            client = self._fetch(record.client_id, holds_previous=index + 1 < len(records))
            if client is not None:
                return client
        return None

    def get(self, client_id: str) -> ClientInfo | None:
        """The client as its server describes it, or None."""
        return self._fetch(client_id, holds_previous=None)

    def list(self) -> list[ClientInfo]:
        """Every client the records name (from the records alone: no request each)."""
        records = self._book.all()
        groups: dict[tuple[str, str], list[int]] = {}
        for r in records:
            groups.setdefault((r.name, r.service_id), []).append(r.secret_version)

        def holds_previous(r: Registration) -> bool:
            versions = groups[(r.name, r.service_id)]
            return r.secret_version == max(versions) and len(versions) > 1

        return [_client(r, None, holds_previous(r)) for r in records]

    def add(
        self,
        name: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> FreshSecret:
        """Register a client for the service named in ``metadata``, under ``name``."""
        if audiences:
            raise Rejected("RFC 7591 registration cannot record audiences")
        service_id = str(metadata.get("service_id", ""))
        version = max((r.secret_version for r in self._book.of(name, service_id)), default=0)
        record = Registration(
            client_id="",
            name=name,
            service_id=service_id,
            metadata=dict(metadata),
            scopes=tuple(scopes),
            secret_version=version + 1,
        )
        return self._register(record)

    def remove(self, client_id: str) -> bool:
        """Delete the client at its server, then its record; False if either was gone."""
        with self._clients.held(client_id):
            current = self._current(client_id)
            if current is None:
                return False
            _, credentials = current
            response = self._peer.call(
                "DELETE",
                credentials.client_uri,
                ok=(200, 204, *GONE),
                bearer=credentials.access_token,
            )
            gone = _gone(response)
            self._forget(client_id)
            return not gone

    def rotate(
        self, client_id: str, grace_seconds: int = 0, *, replace_current: bool = False
    ) -> FreshSecret:
        """A new secret: by an update where the server issues one, else by registering
        the service anew (``grace_seconds`` is the reconcile's to act on). A secret the
        server issued unasked, in an earlier answer, is the new one: no other is asked for."""
        with self._clients.held(client_id):
            record, credentials = self._existing(client_id)
            with self._memo:
                issued = self._issued.pop(client_id, None)
            if issued is not None and _same(issued, credentials.secret_digest):
                return FreshSecret(_client(record, None, self._has_previous(record)), issued)
            body, record, issued = self._update(record, credentials, record.scopes)
            if issued is not None:
                with self._memo:
                    self._issued.pop(client_id, None)
                return FreshSecret(_client(record, body, self._has_previous(record)), issued)
            versions = (r.secret_version for r in self._book.of(record.name, record.service_id))
            fresh = self._register(replace(record, client_id="", secret_version=max(versions) + 1))
            if replace_current:
                self.remove(client_id)
            return fresh

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        """Replace the client's scopes by an RFC 7592 update (the secret stays)."""
        if audiences:
            raise Rejected("RFC 7591 registration cannot record audiences")
        with self._clients.held(client_id):
            record, credentials = self._existing(client_id)
            if record.scopes and not scopes:
                # RFC 7592 §2.2 reads an update without `scope` as "the server's default",
                # which may be every scope it knows (oidc-provider's): taking the last scope
                # away could grant more, never less.
                raise Rejected(
                    f"client {client_id}: an RFC 7592 update cannot take every scope away (no "
                    "scope means the server's default, which may allow more); it keeps "
                    f"{' '.join(record.scopes)}. Remove the service, or its label, to end the "
                    "client"
                )
            body, record, _ = self._update(record, credentials, tuple(scopes))
            return _client(record, body, self._has_previous(record))

    def retire_previous(self, client_id: str) -> bool:
        """Delete the clients this one replaced at its rotation."""
        record, _ = self._existing(client_id)
        older = [
            r
            for r in self._book.of(record.name, record.service_id)
            if r.secret_version < record.secret_version
        ]
        for previous in older:
            self.remove(previous.client_id)
        return bool(older)

    def ping(self) -> None:
        """Raise unless the registration endpoint answers (any answer but 5xx: a ``GET``
        on an endpoint that takes only ``POST`` proves it is there)."""
        self._peer.call("GET", self._url, ok=tuple(range(200, 500)))

    # -- plumbing ------------------------------------------------------------------------

    def _current(self, client_id: str) -> tuple[Registration, Credentials] | None:
        """The client's record and credentials: the book's, or what an answer renewed
        that the book could not store yet."""
        record = self._book.get(client_id)
        with self._memo:
            kept = self._unwritten.get(client_id)
            if kept is not None and record is not None and kept[0] == record.generation:
                return kept[1], kept[2]
            self._unwritten.pop(client_id, None)  # stored after all, or gone
        if record is None:
            return None
        return record, self._book.credentials(record)

    def _forget(self, client_id: str) -> None:
        """Drop the client's records and whatever memory keeps of it."""
        self._book.drop(client_id)
        with self._memo:
            self._unwritten.pop(client_id, None)
            self._issued.pop(client_id, None)

    def _existing(self, client_id: str) -> tuple[Registration, Credentials]:
        current = self._current(client_id)
        if current is None:
            raise TransientError(f"client {client_id} was removed meanwhile")
        return current

    def _has_previous(self, record: Registration) -> bool:
        return any(
            r.secret_version < record.secret_version
            for r in self._book.of(record.name, record.service_id)
        )

    def _fetch(self, client_id: str, *, holds_previous: bool | None) -> ClientInfo | None:
        """The client as its server describes it (``holds_previous`` None: from the
        records), or None if the server or the records no longer have it."""
        with self._clients.held(client_id):
            current = self._current(client_id)
            if current is None:
                return None
            record, credentials = current
            response = self._peer.call(
                "GET", credentials.client_uri, ok=(200, *GONE), bearer=credentials.access_token
            )
            if _gone(response):
                self._forget(client_id)
                return None
            answer = json_object(response)
            record, _, _ = self._renewed(record, credentials, answer, record)
            if holds_previous is None:
                holds_previous = self._has_previous(record)
            return _client(record, answer, holds_previous)

    def _register(self, record: Registration) -> FreshSecret:
        if self._hold is not None and (left := self._hold[0] - self._clock()) > 0:
            raise Rejected(
                f"{self._hold[1]} (registrations wait {format_duration(math.ceil(left))} more: "
                "each try would leave another such client; a registrar restart tries at once)"
            )
        response = self._peer.call(
            "POST",
            self._url,
            ok=(200, 201),
            json=_metadata(record.name, record.scopes),
            bearer=self._initial_token,
        )
        body = json_object(response)
        client_id = body.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise self._unmanageable(
                f"POST {self._path}: the answer has no client_id, so the registrar cannot "
                "remove what the server may have registered"
            )
        token = body.get("registration_access_token")
        try:
            uri = self._client_uri(body, "")
        except Rejected as exc:
            raise self._unmanageable(
                f"POST {self._path}: the server registered client {client_id}, but its {exc}; "
                "the registrar cannot remove it again (delete it at the server)"
            ) from None
        if not isinstance(token, str) or not token or not uri:
            raise self._unmanageable(
                f"POST {self._path}: the server registered client {client_id} but gave no "
                "registration access token and configuration URL (RFC 7592), so the registrar "
                "cannot remove it again (delete it at the server); the dcr backend needs a "
                "server that manages registrations"
            )
        secret, method = body.get("client_secret"), body.get("token_endpoint_auth_method")
        if not isinstance(secret, str) or not secret or method not in (None, *SECRET_METHODS):
            # A server policy may register the client for another method (private_key_jwt,
            # say): a client no service can use, which each pass would register again.
            self._undo(uri, token)
            raise Rejected(
                f"POST {self._path}: the server registered client {client_id} without a "
                f"client secret to authenticate with (token_endpoint_auth_method "
                f"{method!r}); the registrar deleted it again"
            )
        credentials = Credentials(token, uri, secret_digest(secret))
        try:
            stored = self._book.write(replace(record, client_id=client_id), credentials)
        except RegistrarError:
            # Without its record the client could never be managed again: undo it.
            self._undo(uri, token)
            raise
        return FreshSecret(_client(stored, body, self._has_previous(stored)), secret)

    def _unmanageable(self, reason: str) -> Rejected:
        """The refusal of a registration the server made and the registrar cannot manage;
        registrations wait ``REFUSAL_HOLD`` from now."""
        self._hold = (self._clock() + REFUSAL_HOLD, reason)
        return Rejected(reason)

    def _undo(self, uri: str, token: str) -> None:
        """Delete a client just registered, as far as the server lets us."""
        with contextlib.suppress(RegistrarError):
            self._peer.call("DELETE", uri, ok=(200, 204, *GONE), bearer=token)

    def _update(
        self, record: Registration, credentials: Credentials, scopes: Sequence[str]
    ) -> tuple[dict[str, Any], Registration, str | None]:
        """RFC 7592 §2.2: the whole metadata again, with the client id. The answer, the
        record after it, and the new secret if the server issued one."""
        body = {**_metadata(record.name, scopes), "client_id": record.client_id}
        response = self._peer.call(
            "PUT",
            credentials.client_uri,
            ok=(200, *GONE),
            json=body,
            bearer=credentials.access_token,
        )
        if _gone(response):
            self._forget(record.client_id)
            raise TransientError(f"client {record.client_id} is gone from its server")
        answer = json_object(response)
        updated, _, issued = self._renewed(
            record, credentials, answer, replace(record, scopes=tuple(scopes))
        )
        return answer, updated, issued

    def _renewed(
        self,
        record: Registration,
        credentials: Credentials,
        answer: Mapping[str, Any],
        updated: Registration,
    ) -> tuple[Registration, Credentials, str | None]:
        """``updated`` and the credentials after an answer of the client configuration
        endpoint, written to the book if either changed, and the new secret if the answer
        issued one.

        A server may answer a read or an update with a new registration access token, the
        old one then spent (oidc-provider at every update, Keycloak at every use), or with
        a new client secret, the old one then ended (RFC 7592 §2.1, §2.2): both are
        recorded before anything else, the secret as the client's next version."""
        token = answer.get("registration_access_token")
        refused: Rejected | None = None
        try:
            uri = self._client_uri(answer, credentials.client_uri)
        except Rejected as exc:
            uri, refused = credentials.client_uri, exc
        digest, issued = credentials.secret_digest, answer.get("client_secret")
        if isinstance(issued, str) and issued and not _same(issued, digest):
            digest = secret_digest(issued)
            updated = replace(updated, secret_version=record.secret_version + 1)
            with self._memo:
                self._issued[record.client_id] = issued
        else:
            issued = None
        renewed = Credentials(
            token if isinstance(token, str) and token else credentials.access_token,
            uri,
            digest,
        )
        if updated != record or renewed != credentials or record.client_id in self._unwritten:
            updated = self._store(record, updated, renewed)
        if refused is not None:
            # After the write: a new token in the same answer has spent the old one.
            raise Rejected(
                f"client {record.client_id}: the server answered with a new {refused}; the "
                "registrar keeps the one it had"
            )
        return updated, renewed, issued

    def _store(
        self, record: Registration, updated: Registration, credentials: Credentials
    ) -> Registration:
        """Write ``updated`` over ``record``; if the book fails, keep it in memory, the
        only copy of what the server just renewed, until a later write succeeds."""
        try:
            stored = self._book.write(updated, credentials)
        except Exception:
            with self._memo:
                self._unwritten[record.client_id] = (record.generation, updated, credentials)
            raise
        with self._memo:
            self._unwritten.pop(record.client_id, None)
        return stored

    def _client_uri(self, body: Mapping[str, Any], default: str) -> str:
        """The client configuration URL an answer gives (RFC 7592 §3), else ``default``.

        The registration access token goes there with every later call, so it must be a
        fully qualified http(s) URL, and https when the registration endpoint is: a
        server behind a TLS proxy that does not know it (no ``X-Forwarded-Proto``) answers
        ``http://``, and following it would send the token in the clear.
        """
        uri = body.get("registration_client_uri")
        if not isinstance(uri, str) or not uri:
            return default
        try:
            parsed: httpx.URL | None = httpx.URL(uri)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise Rejected(
                f"registration_client_uri {uri[:200]!r} is not a fully qualified http(s) "
                "URL (RFC 7592 §3)"
            )
        if parsed.scheme == "http" and httpx.URL(self._url).scheme == "https":
            raise Rejected(
                f"registration_client_uri {uri[:200]!r} is http while the registration "
                "endpoint is https: the registrar will not send a registration access token "
                "in the clear (is the server's public URL https, e.g. behind its proxy?)"
            )
        return uri


def _same(secret: str, digest: str) -> bool:
    """Whether ``secret`` is the one ``digest`` fingerprints (in constant time)."""
    return hmac.compare_digest(secret_digest(secret).encode(), digest.encode())


def _gone(response: httpx.Response) -> bool:
    """Whether an answer of the client configuration endpoint says the client is gone.

    A 404 as a web page is a proxy's or a wrong path's, no word on the client: taking it
    for one would drop the record, the only handle on a client that still works, and
    register the service anew (``TransientError`` instead, tried again)."""
    if response.status_code not in GONE:
        return False
    if response.status_code == 404 and response.headers.get("Content-Type", "").startswith(
        "text/html"
    ):
        raise TransientError(
            f"{response.request.method} {response.request.url.path}: 404 as a web page, "
            "not from the registration server (a proxy in the way?)"
        )
    return True


def _metadata(name: str, scopes: Sequence[str]) -> dict[str, Any]:
    """The client metadata (RFC 7591 §2) of a client credentials client."""
    body: dict[str, Any] = {
        "client_name": name,
        "grant_types": ["client_credentials"],
        "response_types": [],
        "redirect_uris": [],
        "token_endpoint_auth_method": "client_secret_basic",
        "software_id": SOFTWARE_ID,
        "software_version": __version__,
    }
    if scopes:
        body["scope"] = " ".join(scopes)
    return body


def _client(
    record: Registration, body: Mapping[str, Any] | None, holds_previous: bool
) -> ClientInfo:
    """What the reconcile sees: the record, with the scopes the server reports if asked.
    A client that replaced others at a rotation holds previous secrets (theirs), working
    until ``retire_previous``."""
    scope = body.get("scope") if body is not None else None
    scopes = tuple(scope.split()) if isinstance(scope, str) else record.scopes
    # RFC 7591 §3.2.1: 0 (or, from a lax server, nothing) is a secret that never ends.
    ends = body.get("client_secret_expires_at") if body is not None else None
    return ClientInfo(
        client_id=record.client_id,
        secret_version=record.secret_version,
        metadata={**record.metadata, "name": record.name},
        scopes=scopes,
        audiences=(),
        previous_secret_expires_at=math.inf if holds_previous else None,
        secret_expires_at=(
            float(ends)
            if isinstance(ends, int | float) and not isinstance(ends, bool) and 0 < ends < math.inf
            else None
        ),
    )
