"""The registration policy: what the operator allows each service to be granted.

Labels ask (``labels.read_labels``); the policy allows. Rules are tried in order and the
first whose match fits a service applies; services no rule matches get the default. A
service whose labels ask for anything its rule does not allow is refused as a whole.

Without a policy file the registrar runs the safe default: a service may take its own
name as client id, or an id that starts with its own stack's namespace and ``_``; label
scopes and audiences are refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from swarm_oauth.durations import format_duration
from swarm_oauth.registrar.labels import (
    AUDIENCE_LABEL,
    MAX_AGE_LABEL,
    SCOPES_LABEL,
    SERVICE_CLIENT_ID_LABEL,
    Ask,
    InvalidLabels,
)
from swarm_oauth.registrar.model import DesiredIdentity, ObservedService


class Refused(InvalidLabels):
    """The labels ask for something the policy does not allow; nothing is half-granted."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True, slots=True)
class Match:
    """Which services a rule is for; every part given must fit."""

    stack: str | None = None  # glob on com.docker.stack.namespace
    service: str | None = None  # glob on the service name
    labels: Mapping[str, str] = field(default_factory=dict)  # each must equal

    def fits(self, service: ObservedService) -> bool:
        """Whether ``service`` is one of this rule's."""
        if self.stack is not None and not fnmatchcase(service.stack_namespace or "", self.stack):
            return False
        if self.service is not None and not fnmatchcase(service.name, self.service):
            return False
        return all(service.labels.get(k) == v for k, v in self.labels.items())

    def covers(self, other: Match) -> bool:
        """Whether every service ``other`` fits, this fits too (told for sure only when
        each of this match's conditions is absent, ``*``, or the same as ``other``'s)."""
        return (
            _covers(self.stack, other.stack)
            and _covers(self.service, other.service)
            and self.labels.items() <= other.labels.items()
        )


def _covers(glob: str | None, other: str | None) -> bool:
    return glob is None or glob == "*" or glob == other


@dataclass(frozen=True, slots=True)
class Grant:
    """What a service may ask for, as globs. ``client_ids`` None is the safe default: ids
    that start with the service's own stack namespace and ``_``. A service may always take
    its own name."""

    client_ids: tuple[str, ...] | None = None
    scopes: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    # The longest a client secret may live, in seconds (0: no rotation by age); None: the
    # registrar's --secret-max-age. A label may ask for a shorter one, never a longer one.
    secret_max_age: float | None = None

    def max_age_for(
        self, asked: float | None, default: float, rule: str, floor: float = 0.0
    ) -> float:
        """The secret max age a service gets when its label asks for ``asked``;
        ``Refused`` when that is longer than this grant's (or the default) allows, or
        shorter than ``floor`` (the registrar's rotation grace)."""
        ceiling = default if self.secret_max_age is None else self.secret_max_age
        if asked is None:
            return ceiling
        if asked and asked < floor:
            # The registry keeps one previous secret: a rotation within the grace of the
            # last one would end that grace early, for tasks the update has not reached.
            raise Refused(
                "secret_max_age_not_allowed",
                f"{MAX_AGE_LABEL} asks for {format_duration(asked)}, shorter than the "
                f"registrar's rotation grace of {format_duration(floor)}",
            )
        if ceiling and (asked == 0 or asked > ceiling):
            raise Refused(
                "secret_max_age_not_allowed",
                f"{MAX_AGE_LABEL} asks for {format_duration(asked) if asked else 'never'}, "
                f"longer than the {format_duration(ceiling)} of {rule}",
            )
        return asked

    def allows_client_id(self, client_id: str, service: ObservedService) -> bool:
        """Whether ``service`` may take ``client_id``."""
        if client_id == service.name:
            return True
        if self.client_ids is None:
            stack = service.stack_namespace
            return bool(stack) and client_id.startswith(f"{stack}_")
        return _any(client_id, self.client_ids)

    def scopes_within(self, scopes: Iterable[str]) -> tuple[str, ...]:
        """The scopes of ``scopes`` that this grant allows."""
        return tuple(s for s in scopes if _any(s, self.scopes))

    def audiences_within(self, audiences: Iterable[str]) -> tuple[str, ...]:
        """The audiences of ``audiences`` that this grant allows."""
        return tuple(a for a in audiences if _any(a, self.audiences))


@dataclass(frozen=True, slots=True)
class Rule:
    """A match and what it grants; ``line`` is where it starts in the policy file."""

    match: Match
    grant: Grant
    line: int = 0


@dataclass(frozen=True, slots=True)
class RegistrationPolicy:
    """The operator's rules, in order, and the grant for services no rule matches."""

    rules: tuple[Rule, ...] = ()
    default: Grant = field(default_factory=Grant)
    # Where the rules came from, for messages; empty for the built-in safe default.
    source: str = ""

    def grant_for(self, service: ObservedService) -> tuple[Grant, str]:
        """The grant that applies to ``service`` and how to name it in a message."""
        for index, rule in enumerate(self.rules):
            if rule.match.fits(service):
                return rule.grant, f"rule {index + 1} of {self.source} (line {rule.line})"
        if self.source:
            return self.default, f"the default of {self.source}"
        return self.default, "the built-in default (no --policy)"

    def shadowed(self) -> list[tuple[int, int]]:
        """Rules that can never apply, each as (its number, the number of an earlier rule
        that fits every service it fits), numbered from 1."""
        found = []
        for later, rule in enumerate(self.rules):
            earlier = next(
                (i for i in range(later) if self.rules[i].match.covers(rule.match)), None
            )
            if earlier is not None:
                found.append((later + 1, earlier + 1))
        return found

    def decide(
        self,
        service: ObservedService,
        ask: Ask,
        default_max_age: float = 0.0,
        min_max_age: float = 0.0,
    ) -> DesiredIdentity:
        """The identity ``service`` gets for what its labels ask; ``Refused`` (as a
        whole) when the applicable grant does not allow all of it. ``default_max_age`` is
        the registrar's secret max age, for grants that set none; ``min_max_age`` the
        shortest a label may ask for (its rotation grace)."""
        grant, rule = self.grant_for(service)
        client_id = ask.client_id or service.name
        if not grant.allows_client_id(client_id, service):
            allowed = (
                f"ids matching {', '.join(grant.client_ids)}"
                if grant.client_ids
                else "ids starting with its own stack's namespace and '_'"
            )
            raise Refused(
                "client_id_not_allowed",
                f"{SERVICE_CLIENT_ID_LABEL}={client_id} is not allowed by {rule} "
                f"(it allows the service name and {allowed})",
            )
        for label, asked, within, code in (
            (SCOPES_LABEL, ask.scopes, grant.scopes_within(ask.scopes), "scope_not_allowed"),
            (
                AUDIENCE_LABEL,
                ask.audiences,
                grant.audiences_within(ask.audiences),
                "audience_not_allowed",
            ),
        ):
            refused = [item for item in asked if item not in within]
            if refused:
                raise Refused(
                    code, f"{label} asks for {' '.join(refused)}, which {rule} does not allow"
                )
        max_age = grant.max_age_for(ask.secret_max_age, default_max_age, rule, min_max_age)
        return DesiredIdentity(
            client_id, ask.scopes, ask.audiences, ask.target, ask.uid, ask.gid, ask.mode, max_age
        )


SAFE_DEFAULT = RegistrationPolicy()
"""The policy without a policy file: own-stack client ids, no label scopes or audiences."""


def _any(value: str, globs: Iterable[str]) -> bool:
    return any(fnmatchcase(value, glob) for glob in globs)
