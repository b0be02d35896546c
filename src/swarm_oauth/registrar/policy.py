"""Which services are managed and what identity their labels ask for."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from swarm_oauth.identifiers import (
    InvalidClientData,
    is_audience,
    is_scope_token,
    validate_client_id,
)
from swarm_oauth.registrar.model import MANAGED_BY, DesiredIdentity, ObservedService

SERVICE_CLIENT_ID_LABEL = "swarm-oauth.client-id"
SCOPES_LABEL = "swarm-oauth.scopes"
AUDIENCE_LABEL = "swarm-oauth.audience"
TARGET_LABEL = "swarm-oauth.secret-target"
DEFAULT_SELECTOR = "swarm-oauth.client=true"
DEFAULT_TARGET = "oauth_client_secret"

# A file name directly under /run/secrets: no path separator, no "." or "..".
_TARGET = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")


class InvalidLabels(ValueError):
    """A selected service's labels cannot be turned into a client; the message says why."""


@dataclass(frozen=True, slots=True)
class Selector:
    """``LABEL=VALUE`` (value compared case-insensitively, as swarm-listener does for
    ``true``) or a bare ``LABEL`` (present with any value)."""

    key: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Parse ``LABEL=VALUE`` or ``LABEL``; ``ValueError`` if the label is empty."""
        key, sep, value = text.partition("=")
        key = key.strip()
        if not key:
            raise ValueError(f"selector {text!r} names no label")
        return cls(key, value.strip() if sep else None)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a service with these labels is selected."""
        if self.key not in labels:
            return False
        return self.value is None or labels[self.key].casefold() == self.value.casefold()

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True, slots=True)
class Policy:
    """The registrar's configuration as it bears on one service."""

    selector: Selector
    token_url: str

    def selected(self, service: ObservedService) -> bool:
        """Whether the registrar manages this service."""
        return self.selector.matches(service.labels)

    def desired(self, service: ObservedService) -> DesiredIdentity:
        """The identity a selected service's labels ask for; ``InvalidLabels`` if none can."""
        labels = service.labels
        client_id = labels.get(SERVICE_CLIENT_ID_LABEL, "").strip() or service.name
        try:
            validate_client_id(client_id)
        except InvalidClientData as exc:
            raise InvalidLabels(f"{SERVICE_CLIENT_ID_LABEL}: {exc}") from None
        if not client_id.strip("."):  # "." and ".." would be path segments in the API's URLs
            raise InvalidLabels(f"{SERVICE_CLIENT_ID_LABEL}: must not consist of dots only")
        scopes = _words(labels.get(SCOPES_LABEL, ""))
        if not all(is_scope_token(scope) for scope in scopes):
            raise InvalidLabels(f"{SCOPES_LABEL}: scopes must be RFC 6749 scope tokens")
        audiences = _words(labels.get(AUDIENCE_LABEL, ""))
        if not all(is_audience(audience) for audience in audiences):
            raise InvalidLabels(f"{AUDIENCE_LABEL}: audiences must be printable ASCII")
        target = labels.get(TARGET_LABEL, "").strip() or DEFAULT_TARGET
        if not _TARGET.fullmatch(target):
            raise InvalidLabels(
                f"{TARGET_LABEL}: must be a file name of A-Z a-z 0-9 . _ - (at most 128)"
            )
        return DesiredIdentity(client_id, scopes, audiences, target)

    def wanted_client(self, service: ObservedService | None) -> str | None:
        """The client id this service should own, or None if it should own none.

        ``InvalidLabels`` propagates: a typo in a label must not cost a running service
        its identity, so callers keep what exists.
        """
        if service is None or not self.selected(service):
            return None
        return self.desired(service).client_id


def client_metadata(service: ObservedService, incarnation: str) -> dict[str, str]:
    """What the registrar records on a client it registers for ``service``."""
    return {
        "managed_by": MANAGED_BY,
        "service_id": service.id,
        "service_name": service.name,
        "incarnation": incarnation,
    }


def _words(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value.split()))
