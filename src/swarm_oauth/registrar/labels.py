"""What a service's labels say: whether it is selected, and what identity it asks for.

Labels only ask; the operator's registration policy (``policy``) decides what is granted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from swarm_oauth.durations import InvalidDuration, format_duration, parse_duration
from swarm_oauth.identifiers import (
    MAX_LIST_ITEMS,
    InvalidClientData,
    is_audience,
    is_scope_token,
    validate_client_id,
)
from swarm_oauth.registrar.model import ObservedService

SERVICE_CLIENT_ID_LABEL = "swarm-oauth.client-id"
SCOPES_LABEL = "swarm-oauth.scopes"
AUDIENCE_LABEL = "swarm-oauth.audience"
TARGET_LABEL = "swarm-oauth.secret-target"
UID_LABEL = "swarm-oauth.secret-uid"
GID_LABEL = "swarm-oauth.secret-gid"
MODE_LABEL = "swarm-oauth.secret-mode"
MAX_AGE_LABEL = "swarm-oauth.secret-max-age"
DEFAULT_SELECTOR = "swarm-oauth.client=true"
DEFAULT_TARGET = "oauth_client_secret"

# A file name directly under /run/secrets: no path separator, no "." or "..".
_TARGET = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
_NUMERIC_ID = re.compile(r"[0-9]{1,10}")
# Linux ids are 32-bit, and the all-ones one means "none" (chown's "leave it").
MAX_NUMERIC_ID = 2**32 - 2
_MODE = re.compile(r"0?[0-7]{3}")
# The shortest secret max age a label may ask for, whatever the registrar's settings: each
# replacement restarts the service's tasks, and an age of a few seconds would have the
# registrar replace the secret every time it looks at the service (each event, each
# recheck of a secret still in use). The registration policy also holds a label to the
# rotation grace (``Grant.max_age_for``).
MIN_SECRET_MAX_AGE = 30.0


class InvalidLabels(ValueError):
    """A selected service's labels cannot be turned into an identity; ``reason`` says why
    and ``code`` names the kind of problem (for metrics)."""

    code = "invalid_label"

    @property
    def reason(self) -> str:
        """The problem in plain words."""
        return str(self)


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
class Ask:
    """What a service's labels ask for, checked for form but not yet for permission.

    ``client_id`` is None when no label asks for one (the service name is then used).
    """

    client_id: str | None
    scopes: tuple[str, ...]
    audiences: tuple[str, ...]
    target: str
    uid: str = "0"
    gid: str = "0"
    mode: int = 0o444
    # Seconds after which the client secret is rotated; None: the registrar's setting.
    secret_max_age: float | None = None


def read_labels(service: ObservedService) -> Ask:
    """The identity the labels of ``service`` ask for; ``InvalidLabels`` when one is
    malformed (a typo must not turn into some other identity)."""
    labels = service.labels
    client_id = labels.get(SERVICE_CLIENT_ID_LABEL, "").strip() or None
    if client_id is not None:
        try:
            validate_client_id(client_id)
        except InvalidClientData as exc:
            raise InvalidLabels(f"{SERVICE_CLIENT_ID_LABEL}: {exc}") from None
        if not client_id.strip("."):  # "." and ".." would be path segments in API URLs
            raise InvalidLabels(f"{SERVICE_CLIENT_ID_LABEL}: must not consist of dots only")
    scopes = _words(labels.get(SCOPES_LABEL, ""))
    if not all(is_scope_token(scope) for scope in scopes):
        raise InvalidLabels(f"{SCOPES_LABEL}: scopes must be RFC 6749 scope tokens")
    audiences = _words(labels.get(AUDIENCE_LABEL, ""))
    if not all(is_audience(audience) for audience in audiences):
        raise InvalidLabels(f"{AUDIENCE_LABEL}: audiences must be printable ASCII")
    for label, items in ((SCOPES_LABEL, scopes), (AUDIENCE_LABEL, audiences)):
        if len(items) > MAX_LIST_ITEMS:  # what a client may hold
            raise InvalidLabels(f"{label}: at most {MAX_LIST_ITEMS} items")
    target = labels.get(TARGET_LABEL, "").strip() or DEFAULT_TARGET
    if not _TARGET.fullmatch(target):
        raise InvalidLabels(
            f"{TARGET_LABEL}: must be a file name of A-Z a-z 0-9 . _ - (at most 128)"
        )
    uid = _numeric(labels, UID_LABEL)
    gid = _numeric(labels, GID_LABEL)
    mode_text = labels.get(MODE_LABEL, "").strip()
    if mode_text and not _MODE.fullmatch(mode_text):
        raise InvalidLabels(f"{MODE_LABEL}: must be an octal file mode such as 0400")
    mode = int(mode_text, 8) if mode_text else 0o444
    max_age_text = labels.get(MAX_AGE_LABEL, "").strip()
    try:
        max_age = parse_duration(max_age_text) if max_age_text else None
    except InvalidDuration as exc:
        raise InvalidLabels(f"{MAX_AGE_LABEL}: {exc}") from None
    if max_age and max_age < MIN_SECRET_MAX_AGE:
        raise InvalidLabels(
            f"{MAX_AGE_LABEL}: at least {format_duration(MIN_SECRET_MAX_AGE)} (0: never)"
        )
    return Ask(client_id, scopes, audiences, target, uid, gid, mode, max_age)


def _numeric(labels: Mapping[str, str], label: str) -> str:
    value = labels.get(label, "").strip() or "0"
    if not _NUMERIC_ID.fullmatch(value) or int(value) > MAX_NUMERIC_ID:
        raise InvalidLabels(f"{label}: must be a numeric user or group id (0 to {MAX_NUMERIC_ID})")
    return value


def _words(value: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value.split()))
