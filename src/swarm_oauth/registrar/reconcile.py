"""Make one key's part of the world agree with what Docker reports: ``reconcile(key)``.

A key is a service id or a managed client id (``model.Key``); the work queue hands each to
one worker at a time. Every step checks before it acts, so a second run changes nothing,
and a run that died between two steps is finished by the next one. The steps and their
crash order are in docs/architecture.md, "Reconciling one key".
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol, TypeVar

from swarm_oauth.durations import format_duration
from swarm_oauth.registrar.identities import Identities
from swarm_oauth.registrar.labels import MIN_SECRET_MAX_AGE, InvalidLabels
from swarm_oauth.registrar.locks import KeyedLocks
from swarm_oauth.registrar.model import (
    ClientInfo,
    DesiredIdentity,
    DockerSecret,
    FreshSecret,
    Key,
    ObservedService,
    Reservation,
    SecretRef,
    client_metadata,
)
from swarm_oauth.registrar.policy import Refused
from swarm_oauth.registrar.ports import (
    ClientRegistry,
    Rejected,
    ServiceGone,
    Swarm,
    TransientError,
)
from swarm_oauth.registrar.rotations import RotationRequests
from swarm_oauth.registrar.spec import (
    RESERVATION,
    RESERVED_CLIENT_LABEL,
    SECRET_CLIENT_ID_LABEL,
    VERSION_LABEL,
    attach,
    client_secrets_filter,
    detach,
    is_current,
    reservation_labels,
    reservation_name,
    reservation_of,
    secret_labels,
    secret_name,
    service_secrets_filter,
    target_taken,
)
from swarm_oauth.registrar.status import ServiceStatus, State, StatusBoard

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Outcome(StrEnum):
    """How reconciling one key ended, from least to most in need of attention."""

    IGNORED = "ignored"  # not selected and nothing of the registrar's attached to it
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    CHANGED = "changed"
    INVALID = "invalid"  # its labels ask for an impossible identity; nothing was added
    REFUSED = "refused"  # its labels ask for more than the policy allows; nothing was added
    CONFLICT = "conflict"  # someone else owns the client id or the secret target
    FAILED = "failed"  # an unexpected error; the next pass tries again
    RETRY = "retry"  # a transient failure; worth retrying soon


_SEVERITY = {outcome: rank for rank, outcome in enumerate(Outcome)}


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The outcome that most needs attention, ``IGNORED`` for none."""
    return max(outcomes, key=_SEVERITY.__getitem__, default=Outcome.IGNORED)


@dataclass(frozen=True, slots=True)
class Result:
    """How a key's reconcile ended, the keys that must be looked at after it, and when
    to look at this one again (something it waits for, like a rolling update)."""

    outcome: Outcome
    then: tuple[Key, ...] = ()
    recheck_after: float | None = None


class Observer(Protocol):
    """Receives what the reconciler did, e.g. to count it in metrics."""

    def action(self, kind: str, outcome: str) -> None:
        """One write (``add_client``, ``create_secret``, ...) ended ``ok``, ``noop`` or
        ``error``."""

    def reconciled(self, outcome: Outcome) -> None:
        """One key's reconcile ended."""

    def refused(self, code: str) -> None:
        """A service was refused; ``code`` says why (``scope_not_allowed``, ...)."""

    def rotated(self, reason: str) -> None:
        """A client secret was rotated, by ``age`` or on ``request``."""


class NullObserver:
    """An observer that keeps nothing."""

    def action(self, kind: str, outcome: str) -> None:
        """Ignore a write."""

    def reconciled(self, outcome: Outcome) -> None:
        """Ignore a reconcile."""

    def refused(self, code: str) -> None:
        """Ignore a refusal."""

    def rotated(self, reason: str) -> None:
        """Ignore a rotation."""


StepHook = Callable[[str], None]
"""Called after each write with its name; a test raises in it to simulate a crash."""


class _Conflict(Exception):
    """Someone else owns what the service would need; the message says what."""


DEFAULT_RESERVATION_SECONDS = 600.0
MAX_RESERVATION_SECONDS = 10 * 365 * 86400.0
# How long the previous client secret keeps working after a rotation by age: long enough
# for a rolling update of the service to replace every task that holds it.
DEFAULT_ROTATION_GRACE = 3600.0
# How soon a stale Docker secret still used by a task is looked at again: at first
# soon, then less often the longer the rollout has taken (a paused update, a task on a
# node that is down), a quarter of the time so far, up to a minute.
RECHECK_SECONDS = 3.0
MAX_RECHECK_SECONDS = 60.0


class Reconciler:
    """``reconcile(key)``: the one entry point of every trigger's work."""

    def __init__(
        self,
        swarm: Swarm,
        registry: ClientRegistry,
        identities: Identities,
        *,
        board: StatusBoard | None = None,
        reservation_seconds: float = DEFAULT_RESERVATION_SECONDS,
        rotation_grace: float = DEFAULT_ROTATION_GRACE,
        after_step: StepHook | None = None,
        observer: Observer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._swarm = swarm
        self._registry = registry
        self.identities = identities
        self.board = board or StatusBoard()
        self._chosen_ids = registry.capabilities.chosen_ids
        self._retire_on_request = registry.capabilities.retire_on_request
        self._reservation_seconds = reservation_seconds
        self._rotation_grace = rotation_grace
        self._after_step = after_step or (lambda step: None)
        self._observer: Observer = observer or NullObserver()
        self._clock = clock
        # Secrets to rotate now, whatever their age (``POST /v1/services/{name}/rotate``).
        self.rotation_requests = RotationRequests()
        # The work queue runs one key at a time, but a removed service's key and the key
        # of one created under its name meet on the same client name: one of them at a
        # time, so the removal cannot take the client the other has just made.
        self._names = KeyedLocks()
        # A new secret the registry made but no Docker secret holds yet (its write failed),
        # by client id: the retry stores this one rather than rotate again. Each rotation
        # costs a kept secret where the registry keeps a few (Hydra five), and enough
        # retries would push out the one the running tasks still use.
        self._unstored: dict[str, FreshSecret] = {}

    def reconcile(self, key: Key) -> Result:
        """Bring ``key`` to its desired state as Docker reports it now; never raises."""
        try:
            work = self._service if key.kind == "service" else self._client
            result = work(key.id)
        except TransientError as exc:
            logger.warning("%s: transient failure, will retry: %s", key, exc)
            self._mark_pending(key, f"a transient failure, retried soon: {exc}")
            result = Result(Outcome.RETRY)
        except ServiceGone:
            logger.info("%s: the service disappeared while being reconciled", key)
            result = Result(Outcome.RETRY)
        except Rejected as exc:  # a peer's answer for good: its reason, not a traceback
            logger.error("%s: reconcile failed: %s", key, exc)
            self._mark_pending(key, f"refused by a peer, tried again at the next pass: {exc}")
            result = Result(Outcome.FAILED)
        except Exception as exc:
            logger.exception("%s: reconcile failed", key)
            self._mark_pending(key, f"an unexpected error ({type(exc).__name__}); see the log")
            result = Result(Outcome.FAILED)
        self._observer.reconciled(result.outcome)
        return result

    def _mark_pending(self, key: Key, reason: str) -> None:
        if key.kind != "service":
            return
        known = self.board.get(key.id)
        self.board.record(
            ServiceStatus(
                key.id,
                known.service_name if known else key.id,
                State.PENDING,
                known.client_id if known else None,
                reason,
                known.secret if known else None,
            )
        )

    # -- a service ---------------------------------------------------------------------

    def _service(self, service_id: str) -> Result:
        service = self._swarm.get_service(service_id)
        if service is None or not self.identities.selected(service):
            self.board.forget(service_id)
            return self._retire_service(service_id, service)
        try:
            desired = self.identities.desired(service)
            if desired.audiences and not self._registry.capabilities.audiences:
                raise Refused(
                    "audiences_not_supported",
                    f"the service asks for audiences {', '.join(desired.audiences)} but this "
                    "backend's clients cannot record audiences; remove the label",
                )
            with self._names.held(desired.client_id):
                return self._converge(service, desired)
        except InvalidLabels as refusal:  # malformed labels, or more than the policy allows
            return self._refused(service, refusal)

    def _converge(self, service: ObservedService, desired: DesiredIdentity) -> Result:
        """The steps for a selected service, each checking before it acts."""
        managed = sorted(
            self._swarm.list_secrets(service_secrets_filter(service.id)), key=lambda s: s.id
        )
        managed_ids = {s.id for s in managed}
        try:
            if target_taken(service, desired, managed_ids):
                managed_ids |= self._gone_at_target(service, desired, managed_ids)
                if target_taken(service, desired, managed_ids):
                    raise _Conflict(f"a secret it does not own is mounted at {desired.target}")
            client, changed = self._usable_client(service, desired)
        except _Conflict as exc:
            logger.warning("service %s: conflict, %s; leaving it alone", service.name, exc)
            self.board.record(
                ServiceStatus(service.id, service.name, State.CONFLICT, desired.client_id, str(exc))
            )
            return Result(Outcome.CONFLICT)
        fresh = None
        if client is None:
            reservation = self._reservation(desired.client_id) if self._chosen_ids else None
            if reservation is not None and reservation.service_name != service.name:
                raise Refused(
                    "client_id_reserved",
                    f"client id {desired.client_id} is reserved for service "
                    f"{reservation.service_name} until {_iso(reservation.until)} (its service "
                    "was removed; `swarm-oauth registrar release` frees it sooner)",
                )
            fresh = self._add_client(service, desired)
            client, changed = fresh.client, True
            if reservation is not None:  # its own, or expired: no longer needed
                self._act(
                    "delete_reservation",
                    service.name,
                    functools.partial(self._swarm.delete_config, reservation.config_id),
                    f"deleted the reservation of client id {desired.client_id}",
                )
        current = next((s for s in managed if is_current(s, client, service.id)), None)
        if current is not None:  # stored after all (an answer lost on the way)
            self._unstored.pop(client.client_id, None)
        now = self._clock()
        # A rotation request is answered once the new secret is mounted: should a step
        # after the rotation fail, it waits for the run that finishes the job.
        with self.rotation_requests.claim(service.id) as requested:
            if current is None:
                if fresh is None:
                    fresh = self._replace_lost_secret(service, client, managed)
                current = self._create_secret(service.name, fresh, service.id)
                managed_ids.add(current.id)
                changed = True
            elif (why := self._rotation_due(current, desired, client, requested.grace)) and not (
                requested.grace and self.holds_previous_secret(service, managed)
            ):
                grace = self._rotation_grace if requested.grace is None else requested.grace
                rotated = client.client_id
                fresh = self._act(
                    "rotate_client",
                    service.name,
                    functools.partial(self._registry.rotate, rotated, math.ceil(grace)),
                    lambda fresh: (
                        f"rotated client {rotated} ({why}); "
                        + _old_secret_lasts(fresh.client, grace, self._clock())
                    ),
                )
                self._observer.rotated("request" if requested.grace is not None else "age")
                current = self._create_secret(service.name, fresh, service.id)
                managed_ids.add(current.id)
                changed = True
                if not grace and self._retire_on_request:
                    self._retire_previous(service.name, fresh.client)
                    fresh = replace(
                        fresh, client=replace(fresh.client, previous_secret_expires_at=None)
                    )
            if fresh is not None:  # with a server that picks ids, it may be another client now
                client = fresh.client
            changed |= self._mount(service, desired, client.client_id, current, managed_ids)
            if fresh is not None:
                requested.honour()
        stale = [s for s in managed if s.id != current.id]
        # A task still running with an old secret keeps it until it is replaced (a rolling
        # update, a rollback): the secret goes once no task uses it, looked at again soon.
        in_use = self._swarm.secrets_in_use(service.id) if stale else set()
        deletable = [s for s in stale if s.id not in in_use]
        changed |= self._delete_secrets(service.name, deletable)
        if (
            self._retire_on_request
            and len(deletable) == len(stale)
            and (client.previous_secret_expires_at or 0) > now
        ):
            # No task holds an old secret any more: where old secrets last until told,
            # this is when they stop.
            changed |= self._retire_previous(service.name, client)
        # Secrets of another client id (the label changed): that client is retired next.
        others = {s.labels.get(SECRET_CLIENT_ID_LABEL) for s in deletable}
        others -= {client.client_id, None}
        then = tuple(Key.client(client_id) for client_id in sorted(o for o in others if o))
        held = [s for s in stale if s.id in in_use]
        state, reason = _rollout(
            client, current, held, now, keeps_every_rotated=self._retire_on_request
        )
        self.board.record(
            ServiceStatus(service.id, service.name, state, client.client_id, reason, current.name)
        )
        outcome = Outcome.CHANGED if changed else Outcome.UNCHANGED
        if len(deletable) == len(stale):
            return Result(outcome, then)
        rolling_for = self._clock() - current.created_at if current.created_at else 0.0
        recheck = min(MAX_RECHECK_SECONDS, max(RECHECK_SECONDS, rolling_for / 4))
        return Result(outcome, then, recheck)

    def _replace_lost_secret(
        self, service: ObservedService, client: ClientInfo, managed: Sequence[DockerSecret]
    ) -> FreshSecret:
        """A new secret for a client whose current one no Docker secret holds: its clear
        value is gone for good (a crash between making it and storing it).

        If that happened in the middle of a rotation, the tasks still run with the
        previous secret, in its grace: it is kept, and only the lost one is replaced. A
        secret this process made and failed to store is not lost: it is stored now.
        """
        unstored = self._unstored.get(client.client_id)
        if unstored is not None and (
            unstored.client.secret_version,
            unstored.client.incarnation,
        ) == (client.secret_version, client.incarnation):
            return unstored
        now = self._clock()
        in_grace = (client.previous_secret_expires_at or 0) > now and any(
            s.labels.get(VERSION_LABEL) == str(client.secret_version - 1) for s in managed
        )
        return self._act(
            "rotate_client",
            service.name,
            functools.partial(self._registry.rotate, client.client_id, 0, replace_current=in_grace),
            f"rotated client {client.client_id}, no Docker secret held its secret",
        )

    def _gone_at_target(
        self, service: ObservedService, desired: DesiredIdentity, managed_ids: Collection[str]
    ) -> set[str]:
        """The secrets mounted at the target that no longer exist, to be replaced.

        A secret that no longer exists is nobody's (Docker refuses to delete one a
        service's spec mounts): a rollback (failure_action, or `docker service rollback`)
        restored the spec from before a rotation, with the secret the rotation then
        deleted. Docker checks only the current spec."""
        gone = {
            ref.secret_id
            for ref in service.secret_refs
            if ref.target == desired.target
            and ref.secret_id not in managed_ids
            and not self._swarm.secret_exists(ref.secret_id)
        }
        if gone:
            logger.warning(
                "service %s: it mounts a Docker secret that no longer exists at %s "
                "(rolled back past a rotation?); mounting its current one",
                service.name,
                desired.target,
                extra={"service": service.name},
            )
        return gone

    def holds_previous_secret(
        self, service: ObservedService, managed: Sequence[DockerSecret] | None = None
    ) -> bool:
        """Whether a task of ``service`` still runs with a secret its spec no longer
        mounts: the last rotation is still rolling out (or stuck). A rotation with a grace
        waits for it, since the registry keeps one previous secret: those tasks' secret
        would stop at once."""
        if managed is None:
            managed = self._swarm.list_secrets(service_secrets_filter(service.id))
        mounted = {ref.secret_id for ref in service.secret_refs}
        previous = {s.id for s in managed} - mounted
        return bool(previous and previous & self._swarm.secrets_in_use(service.id))

    def _rotation_due(
        self,
        current: DockerSecret,
        desired: DesiredIdentity,
        client: ClientInfo,
        requested: float | None,
    ) -> str | None:
        """Why the current secret must be replaced now, or None."""
        if requested is not None:
            return "on request"
        now = self._clock()
        age = now - current.created_at
        if desired.secret_max_age and current.created_at and age >= desired.secret_max_age:
            return f"it is {format_duration(int(age))} old, its maximum is " + format_duration(
                desired.secret_max_age
            )
        ends = client.secret_expires_at
        life = ends - current.created_at if ends is not None and current.created_at else 0
        # A secret its server ends is replaced with a third of its life left: time for the
        # rolling update, and a pass or two missed. One the server gave (next to) no life,
        # its clock behind ours, say, is left alone: each new one would be as short, and
        # replacing them would roll the service's tasks at every pass.
        if ends is not None and life >= MIN_SECRET_MAX_AGE and now >= ends - life / 3:
            return f"its server ends it at {_iso(ends)}"
        return None

    @property
    def rotation_grace(self) -> float:
        """Seconds the previous secret works after a rotation by age (and by default on
        request)."""
        return self._rotation_grace

    def _refused(self, service: ObservedService, refusal: InvalidLabels) -> Result:
        """Refused as a whole: no new client or secret. A client the service already has
        keeps its grants, minus what the policy no longer allows (an update in place)."""
        logger.warning(
            "service %s: refused: %s",
            service.name,
            refusal.reason,
            extra={"service": service.name, "refusal": refusal.code},
        )
        self._observer.refused(refusal.code)
        grant = self.identities.grant(service)
        managed = self._swarm.list_secrets(service_secrets_filter(service.id))
        client_id = None
        for held in sorted({s.labels.get(SECRET_CLIENT_ID_LABEL) or "" for s in managed} - {""}):
            client = self._registry.get(held)
            if client is None or not client.managed or client.service_id != service.id:
                continue
            client_id = held
            scopes = grant.scopes_within(client.scopes)
            audiences = grant.audiences_within(client.audiences)
            if (scopes, audiences) != (client.scopes, client.audiences):
                self._act(
                    "update_client",
                    service.name,
                    functools.partial(self._registry.update, held, scopes, audiences),
                    f"took from client {held} what the policy no longer allows",
                )
        self.board.record(
            ServiceStatus(service.id, service.name, State.REFUSED, client_id, refusal.reason)
        )
        return Result(Outcome.REFUSED if isinstance(refusal, Refused) else Outcome.INVALID)

    def _usable_client(
        self, service: ObservedService, desired: DesiredIdentity
    ) -> tuple[ClientInfo | None, bool]:
        """The service's existing client, or None once a stale one is removed; and whether
        anything was removed. ``_Conflict`` if the client id is someone else's."""
        client = self._registry.find(desired.client_id, service.id)
        if client is None:
            return None, False
        if not client.managed:
            raise _Conflict(f"client {client.client_id} was not registered by the registrar")
        if client.service_id != service.id:
            if self._owned_elsewhere(client):
                raise _Conflict(
                    f"client {client.client_id} belongs to live service {client.service_id}"
                )
            # Its service is gone and this key got here before that removal was
            # reconciled (the service re-created, an event missed, a pass's keys in another
            # order): finish the removal here, in its order. Another service's name gets
            # the reservation it would have left, which the caller then finds.
            if client.service_id:
                old = self._swarm.list_secrets(service_secrets_filter(client.service_id))
                self._delete_secrets(service.name, old)
            if client.service_name and client.service_name != service.name:
                self._reserve(client)
            self._remove_client(service.name, client, "its service is gone")
            return None, True
        if set(client.scopes) != set(desired.scopes) or set(client.audiences) != set(
            desired.audiences
        ):
            # Changed in place: the secret, and so the running tasks, stay as they are.
            updated = self._act(
                "update_client",
                service.name,
                lambda: self._registry.update(client.client_id, desired.scopes, desired.audiences),
                f"updated the scopes and audiences of client {client.client_id}",
            )
            return updated, True
        return client, False

    def _owned_elsewhere(self, client: ClientInfo) -> bool:
        if not client.service_id:
            return False
        other = self._swarm.get_service(client.service_id)
        try:
            return self.identities.wanted_client(other) == client.name
        except InvalidLabels:
            return True  # its owner may come back once its labels are fixed

    def _add_client(self, service: ObservedService, desired: DesiredIdentity) -> FreshSecret:
        return self._act(
            "add_client",
            service.name,
            lambda: self._registry.add(
                desired.client_id,
                desired.scopes,
                desired.audiences,
                client_metadata(service, secrets.token_hex(8)),
            ),
            f"added client {desired.client_id}",
        )

    def _mount(
        self,
        service: ObservedService,
        desired: DesiredIdentity,
        client_id: str,
        current: DockerSecret,
        managed_ids: Collection[str],
    ) -> bool:
        token_url = self.identities.token_url

        def edit(observed: ObservedService) -> tuple[Sequence[SecretRef], Sequence[str]] | None:
            return attach(observed, desired, client_id, current, managed_ids, token_url)

        if edit(service) is None:
            return False
        return self._act(
            "update_service",
            service.name,
            lambda: self._swarm.update_service(service.id, edit),
            f"updated service to mount {current.name} at {desired.target}",
        )

    def _retire_service(self, service_id: str, service: ObservedService | None) -> Result:
        """Take away what a gone or unselected service has of the registrar's: its mounts
        and variables (when it still runs), its Docker secrets, then the clients they were
        made for. The clients go last: they are the record that the service was this
        registrar's, so a run that dies midway is finished by the next."""
        managed = self._swarm.list_secrets(service_secrets_filter(service_id))
        if not managed:
            # Nothing of ours on it. A client whose secrets are already gone is found by
            # the full pass, as a client key.
            return Result(Outcome.IGNORED)
        ours = [
            client
            for client_id in sorted({s.labels.get(SECRET_CLIENT_ID_LABEL) or "" for s in managed})
            if client_id
            and (client := self._registry.get(client_id)) is not None
            and client.managed
            and client.service_id == service_id
        ]
        if service is not None and not ours:
            # A live service whose secrets no client of ours accounts for: another
            # registrar's (another selector, another clients API). Not ours to touch.
            return Result(Outcome.IGNORED)
        name = service.name if service is not None else service_id
        changed = self._detach(service, managed)
        changed |= self._delete_secrets(name, managed)
        why = "its service is gone" if service is None else "its service is no longer selected"
        for client in ours:
            if service is None:
                changed |= self._reserve(client)
            changed |= self._remove_client(name, client, why)
        return Result(Outcome.REMOVED if changed else Outcome.UNCHANGED)

    def _detach(self, service: ObservedService | None, managed: Sequence[DockerSecret]) -> bool:
        ids = {s.id for s in managed}
        if service is None or detach(service, ids) is None:
            return False
        try:
            return self._act(
                "update_service",
                service.name,
                lambda: self._swarm.update_service(service.id, lambda s: detach(s, ids)),
                "updated service to unmount its OAuth secret (no longer selected)",
            )
        except ServiceGone:
            return False

    # -- a client whose service is gone or wants another one ---------------------------

    def _client(self, client_id: str) -> Result:
        client = self._registry.get(client_id)
        if client is None or not client.managed:
            return Result(Outcome.UNCHANGED)
        service_id = client.service_id
        service = self._swarm.get_service(service_id) if service_id else None
        try:
            wanted = self.identities.wanted_client(service)
        except InvalidLabels:
            return Result(Outcome.INVALID)  # keep it: its owner's labels may be fixed
        if wanted == client.name:
            return Result(Outcome.UNCHANGED)  # the service's own: its key looks after it
        leftovers = (
            self._swarm.list_secrets(client_secrets_filter(client_id, service_id))
            if service_id
            else []
        )
        if service is not None and service_id:
            ids = {s.id for s in leftovers}
            if any(ref.secret_id in ids for ref in service.secret_refs):
                # Still mounted: the service's reconcile unmounts it first, then comes back.
                return Result(Outcome.UNCHANGED, (Key.service(service_id),))
        name = service.name if service is not None else service_id or client_id
        changed = self._delete_secrets(name, leftovers)
        if service is None:
            why = "its service is gone"
        elif wanted is None:
            why = "its service is no longer selected"
        else:
            why = f"its service now uses client {wanted}"
        if service is None:
            changed |= self._reserve(client)
        changed |= self._remove_client(name, client, why)
        return Result(Outcome.REMOVED if changed else Outcome.UNCHANGED)

    # -- client-id reservations --------------------------------------------------------

    def _reservation(self, client_id: str) -> Reservation | None:
        """The newest reservation of ``client_id``, expired or not."""
        found = [
            r
            for config in self._swarm.list_configs(
                {**RESERVATION, RESERVED_CLIENT_LABEL: client_id}
            )
            if (r := reservation_of(config)) is not None
        ]
        return max(found, key=lambda r: r.until, default=None)

    def _reserve(self, client: ClientInfo) -> bool:
        """Keep ``client``'s id for its service's name for a while, before the client goes
        (so a crash in between leaves the reservation, not an unprotected id). Where the
        server picks ids, no service can ask for one: nothing to keep."""
        name = client.service_name
        if not name or self._reservation_seconds <= 0 or not self._chosen_ids:
            return False
        until = self._clock() + self._reservation_seconds
        existing = self._reservation(client.client_id)
        if existing is not None and existing.service_name == name and existing.until >= until - 60:
            return False
        return bool(
            self._act(
                "create_reservation",
                name,
                functools.partial(
                    self._swarm.create_config,
                    reservation_name(client.client_id, secrets.token_hex(4)),
                    f"client id {client.client_id} reserved for service {name}\n".encode(),
                    reservation_labels(client.client_id, name, until),
                ),
                f"reserved client id {client.client_id} for service {name} "
                f"for {self._reservation_seconds:g} s",
            )
        )

    def reservations(self) -> list[Reservation]:
        """Every reservation, expired ones included, soonest to end first."""
        found = [r for c in self._swarm.list_configs(RESERVATION) if (r := reservation_of(c))]
        return sorted(found, key=lambda r: r.until)

    def release(self, client_id: str) -> bool:
        """An operator frees ``client_id`` before its reservation ends; False if none."""
        released = False
        for reservation in self.reservations():
            if reservation.client_id == client_id:
                released |= self._act(
                    "delete_reservation",
                    reservation.service_name,
                    functools.partial(self._swarm.delete_config, reservation.config_id),
                    f"released client id {client_id} (by request)",
                )
        return released

    def prune_reservations(self) -> None:
        """Delete the reservations that have ended (run by every full pass)."""
        now = self._clock()
        for reservation in self.reservations():
            if reservation.until < now:
                self._act(
                    "delete_reservation",
                    reservation.service_name,
                    functools.partial(self._swarm.delete_config, reservation.config_id),
                    f"the reservation of client id {reservation.client_id} ended",
                )

    # -- single writes: counted, logged, then the step hook ----------------------------

    def _act(
        self,
        kind: str,
        service_name: str,
        write: Callable[[], T],
        message: str | Callable[[T], str],
    ) -> T:
        """``write``, counted and logged with ``message`` (or what it makes of the result)."""
        try:
            result = write()
        except Exception:
            self._observer.action(kind, "error")
            raise
        if result is False:  # already as wanted: someone else, or an earlier run, did it
            self._observer.action(kind, "noop")
            return result
        self._observer.action(kind, "ok")
        logger.info(
            "service %s: %s",
            service_name,
            message if isinstance(message, str) else message(result),
            extra={"service": service_name, "action": kind},
        )
        self._after_step(kind)
        return result

    def _retire_previous(self, service_name: str, client: ClientInfo) -> bool:
        return bool(
            self._act(
                "retire_previous",
                service_name,
                functools.partial(self._registry.retire_previous, client.client_id),
                f"the rotated-out secrets of client {client.client_id} stop working",
            )
        )

    def _remove_client(self, service_name: str, client: ClientInfo, why: str) -> bool:
        """Remove ``client`` if it is still the one read: not one that another key made
        under its name meanwhile (read again under the name's lock)."""
        with self._names.held(client.name):
            now = self._registry.get(client.client_id)
            if now is None or (now.service_id, now.incarnation) != (
                client.service_id,
                client.incarnation,
            ):
                return False
            removed = self._act(
                "remove_client",
                service_name,
                lambda: self._registry.remove(client.client_id),
                f"removed client {client.client_id} ({why})",
            )
            unstored = self._unstored.get(client.client_id)
            if unstored is not None and unstored.client.incarnation == client.incarnation:
                self._unstored.pop(client.client_id, None)  # its secret, no one's now
            return removed

    def _create_secret(
        self, service_name: str, fresh: FreshSecret, service_id: str
    ) -> DockerSecret:
        client = fresh.client
        name = secret_name(client, service_id)
        self._unstored[client.client_id] = fresh
        created = self._act(
            "create_secret",
            service_name,
            lambda: self._swarm.create_secret(
                name, fresh.secret.encode(), secret_labels(client, service_id)
            ),
            f"created Docker secret {name}",
        )
        self._unstored.pop(client.client_id, None)
        return created

    def _delete_secrets(self, service_name: str, stale: Iterable[DockerSecret]) -> bool:
        deleted = False
        for secret in stale:
            try:
                deleted |= self._act(
                    "delete_secret",
                    service_name,
                    functools.partial(self._swarm.delete_secret, secret.id),
                    f"deleted Docker secret {secret.name}",
                )
            except Rejected as exc:  # e.g. someone mounted it on another service
                logger.warning(
                    "service %s: cannot delete Docker secret %s: %s", service_name, secret.name, exc
                )
        return deleted


def _rollout(
    client: ClientInfo,
    current: DockerSecret,
    held: Sequence[DockerSecret],
    now: float,
    *,
    keeps_every_rotated: bool,
) -> tuple[State, str]:
    """Where a registered service stands whose tasks still run with the secrets ``held``.

    A secret of another client (its client id changed, or a server that registers anew
    at rotation) works as long as that client, which is retired once no task holds its
    secret. This client's rotated-out secrets work until the registry says: the one just
    before the current one, or every one where they last until retired (Hydra)."""
    if not held:
        return State.REGISTERED, ""
    since = f" since {_iso(current.created_at)}" if current.created_at else ""
    until = client.previous_secret_expires_at or 0.0
    mine = [s for s in held if s.labels.get(SECRET_CLIENT_ID_LABEL) == client.client_id]
    previous = str(client.secret_version - 1)
    if mine and (
        until <= now
        or not (keeps_every_rotated or all(s.labels.get(VERSION_LABEL) == previous for s in mine))
    ):
        return State.STRANDED, (
            "tasks still run with a secret that no longer works: the rolling update that "
            f"hands them the current one{since} is stuck, paused or slower than the grace "
            "(docker service ps)"
        )
    lasts = "until they are replaced" if not mine or math.isinf(until) else f"until {_iso(until)}"
    return State.ROLLING, f"tasks still run with the secret before, which works {lasts}; " + (
        f"rolling out{since}"
    )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _old_secret_lasts(client: ClientInfo, grace: float, now: float) -> str:
    """How long a rotated-out secret keeps working, as the registry's answer says: the
    grace asked for is what a registry can keep, not a promise."""
    until = client.previous_secret_expires_at
    if not grace:
        return "the old secret works no longer"
    if until is None or until <= now:
        return (
            f"the old secret works no longer: its server keeps no previous secret, so the "
            f"{format_duration(grace)} grace asked for could not be kept"
        )
    if math.isinf(until):
        return "the old secret works until no task uses it"
    left = until - now
    # The grace asked for, when that is what the registry kept (its clock, a moment ago).
    kept = grace if abs(left - grace) < 60 else max(0, round(left))
    return f"the old secret works {format_duration(kept)} longer"
