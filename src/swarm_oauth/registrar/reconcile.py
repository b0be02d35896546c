"""Make one service's client and Docker secret agree with what Docker reports.

Every trigger (a swarm-listener hint, a Docker event, the periodic pass) ends here, and
every step checks before it acts, so a duplicate run changes nothing and a run that died
between two steps is finished by the next one (DESIGN.md, "Reconciling one service").
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from typing import Any, Protocol, TypeVar

from swarm_oauth.registrar.locks import KeyedLocks
from swarm_oauth.registrar.model import (
    ClientInfo,
    DesiredIdentity,
    DockerSecret,
    IssuedSecret,
    ObservedService,
    SecretRef,
    is_service_ref,
)
from swarm_oauth.registrar.policy import InvalidLabels, Policy, client_metadata
from swarm_oauth.registrar.ports import (
    ClientRegistry,
    Rejected,
    ServiceGone,
    Swarm,
    TransientError,
)
from swarm_oauth.registrar.spec import (
    MANAGED,
    SERVICE_ID_LABEL,
    attach,
    detach,
    is_current,
    secret_labels,
    secret_name,
    service_secrets_filter,
    target_taken,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Outcome(StrEnum):
    """How reconciling one service ended, from least to most in need of attention."""

    IGNORED = "ignored"  # not selected and nothing of the registrar's attached to it
    UNCHANGED = "unchanged"
    REMOVED = "removed"
    CHANGED = "changed"
    INVALID = "invalid"  # its labels ask for an impossible identity; nothing was touched
    CONFLICT = "conflict"  # someone else owns the client id or the secret target
    FAILED = "failed"  # an unexpected error; the next pass tries again
    RETRY = "retry"  # a transient failure; worth retrying now


_SEVERITY = {outcome: rank for rank, outcome in enumerate(Outcome)}


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The outcome that most needs attention, ``IGNORED`` for none."""
    return max(outcomes, key=_SEVERITY.__getitem__, default=Outcome.IGNORED)


class Observer(Protocol):
    """Receives what the reconciler did, e.g. to count it in metrics."""

    def action(self, kind: str, outcome: str) -> None:
        """One write (``add_client``, ``create_secret``, ...) ended ``ok`` or ``error``."""

    def reconciled(self, outcome: Outcome) -> None:
        """One service's reconcile ended."""

    def full_pass(self, managed_services: int) -> None:
        """A full pass finished; ``managed_services`` were selected."""


class _NullObserver:
    def action(self, kind: str, outcome: str) -> None:
        pass

    def reconciled(self, outcome: Outcome) -> None:
        pass

    def full_pass(self, managed_services: int) -> None:
        pass


StepHook = Callable[[str], None]
"""Called after each write with its name; a test raises in it to simulate a crash."""

_KEEP = "\x00keep"  # a service whose labels are invalid keeps whatever it has


class _Conflict(Exception):
    """Someone else owns what the service would need; the message says what."""


class Reconciler:
    """Reconciles services one by one (serialized per service and per client) or all."""

    def __init__(
        self,
        swarm: Swarm,
        registry: ClientRegistry,
        policy: Policy,
        *,
        after_step: StepHook | None = None,
        observer: Observer | None = None,
        workers: int = 4,
    ) -> None:
        self._swarm = swarm
        self._registry = registry
        self._policy = policy
        self._after_step = after_step or (lambda step: None)
        self._observer: Observer = observer or _NullObserver()
        self._locks = KeyedLocks()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="reconcile")
        self._pass_lock = threading.Lock()

    def close(self) -> None:
        """Wait for running work and release the worker threads."""
        self._pool.shutdown(wait=True)

    # -- entry points ------------------------------------------------------------------

    def reconcile_service(self, service_id_or_name: str) -> Outcome:
        """Reconcile whatever service this hint names, as Docker reports it now.

        The reference may be a service id, a service name, or a stack service's name
        without its ``<stack>_`` prefix (swarm-listener's ``shortName``). When no live
        service has exactly that id or name, clients and Docker secrets recorded for
        such a service are retired (the service is gone). A reference that cannot be a
        Docker service id or name is ``IGNORED``.
        """
        ref = service_id_or_name
        if not is_service_ref(ref):
            return Outcome.IGNORED  # no service can have it, so nothing can be its
        try:
            matches = self._resolve(ref)
        except TransientError as exc:
            logger.warning("cannot read service %s, will retry: %s", ref, exc)
            return Outcome.RETRY
        except Exception:
            logger.exception("cannot read service %s", ref)
            return Outcome.FAILED
        outcomes = [self._guarded(s.name, self._reconcile_one, s.id) for s in matches]
        if not any(ref in (s.id, s.name) for s in matches):
            live = {s.id for s in matches}
            outcomes.append(self._guarded(ref, self._collect_gone, ref, live))
        return worst(outcomes)

    def full_pass(self) -> Counter[Outcome]:
        """Reconcile every selected service, then retire what belongs to no such service.

        Call it from a thread of its own, never from a reconcile worker. Raises
        ``TransientError`` when Docker or the clients API cannot be listed.
        """
        with self._pass_lock:
            services = self._swarm.list_services()
            selected = [s for s in services if self._policy.selected(s)]
            outcomes = Counter(
                self._pool.map(lambda s: self._guarded(s.name, self._reconcile_one, s.id), selected)
            )
            wanted = {s.id: self._wanted_or_keep(s) for s in selected}
            clients = self._registry.list()
            orphans = {
                c.service_id
                for c in clients
                if c.managed
                and c.service_id
                and wanted.get(c.service_id) not in (c.client_id, _KEEP)
            }
            # Secrets whose client is gone too (a run that died after removing it, or a
            # client removed through the API). Those of live services are left to their
            # client: without one, they may be another registrar's.
            live = {s.id for s in services}
            for secret in self._swarm.list_secrets(MANAGED):
                service_id = secret.labels.get(SERVICE_ID_LABEL)
                if service_id and service_id not in live:
                    orphans.add(service_id)
            outcomes.update(
                self._pool.map(
                    lambda sid: self._guarded(sid, self._retire, sid, clients), sorted(orphans)
                )
            )
            self._observer.full_pass(len(selected))
            logger.info(
                "full pass: %d selected services, %s",
                len(selected),
                ", ".join(f"{o.value}={n}" for o, n in sorted(outcomes.items())) or "nothing",
            )
            return outcomes

    # -- one service -------------------------------------------------------------------

    def _resolve(self, ref: str) -> list[ObservedService]:
        service = self._swarm.get_service(ref)
        if service is not None:
            return [service]
        return [
            s
            for s in self._swarm.list_services()
            if s.stack_namespace and s.name == f"{s.stack_namespace}_{ref}"
        ]

    def _guarded(self, name: str, work: Callable[..., Outcome], *args: Any) -> Outcome:
        try:
            outcome = work(*args)
        except TransientError as exc:
            logger.warning("service %s: transient failure, will retry: %s", name, exc)
            outcome = Outcome.RETRY
        except ServiceGone:
            logger.info("service %s: disappeared while being reconciled", name)
            outcome = Outcome.RETRY
        except Exception:
            logger.exception("service %s: reconcile failed", name)
            outcome = Outcome.FAILED
        self._observer.reconciled(outcome)
        return outcome

    def _reconcile_one(self, service_id: str) -> Outcome:
        with self._locks.hold(f"service:{service_id}"):
            service = self._swarm.get_service(service_id)
            if service is None:
                return self._retire(service_id, self._registry.list())
            if not self._policy.selected(service):
                if not self._swarm.list_secrets(service_secrets_filter(service.id)):
                    return Outcome.IGNORED
                return self._retire(service_id, self._registry.list())
            try:
                desired = self._policy.desired(service)
            except InvalidLabels as exc:
                logger.warning("service %s: not managed, invalid labels: %s", service.name, exc)
                return Outcome.INVALID
            with self._locks.hold(f"client:{desired.client_id}"):
                return self._converge(service, desired)

    def _converge(self, service: ObservedService, desired: DesiredIdentity) -> Outcome:
        """DESIGN.md's steps for a selected service, each checking before it acts."""
        managed = sorted(
            self._swarm.list_secrets(service_secrets_filter(service.id)), key=lambda s: s.id
        )
        managed_ids = {s.id for s in managed}
        try:
            if target_taken(service, desired, managed_ids):
                raise _Conflict(f"a secret it does not own is mounted at {desired.target}")
            client, changed = self._usable_client(service, desired)
        except _Conflict as exc:
            logger.warning("service %s: conflict, %s; leaving it alone", service.name, exc)
            return Outcome.CONFLICT
        issued = None
        if client is None:
            issued = self._add_client(service, desired)
            client, changed = issued.client, True
        current = next((s for s in managed if is_current(s, client, service.id)), None)
        if current is None:
            if issued is None:
                # The clear secret of the current generation is gone for good: replace it.
                issued = self._act(
                    "rotate_client",
                    service.name,
                    lambda: self._registry.rotate(desired.client_id),
                    f"rotated client {desired.client_id}, no Docker secret held its secret",
                )
            current = self._create_secret(service.name, issued.client, service.id, issued.secret)
            managed_ids.add(current.id)
            changed = True
        changed |= self._mount(service, desired, current, managed_ids)
        changed |= self._delete_secrets(service.name, [s for s in managed if s.id != current.id])
        return Outcome.CHANGED if changed else Outcome.UNCHANGED

    def _usable_client(
        self, service: ObservedService, desired: DesiredIdentity
    ) -> tuple[ClientInfo | None, bool]:
        """The service's existing client, or None once a stale one is removed; and whether
        anything was removed. ``_Conflict`` if the client id is someone else's."""
        client = self._registry.get(desired.client_id)
        if client is None:
            return None, False
        if not client.managed:
            raise _Conflict(f"client {client.client_id} was not registered by the registrar")
        if client.service_id != service.id:
            if self._owned_elsewhere(client):
                raise _Conflict(
                    f"client {client.client_id} belongs to live service {client.service_id}"
                )
            self._remove_client(service.name, client, "its service was re-created")
            if client.service_id:
                old = self._swarm.list_secrets(service_secrets_filter(client.service_id))
                self._delete_secrets(service.name, old)
            return None, True
        if set(client.scopes) != set(desired.scopes) or set(client.audiences) != set(
            desired.audiences
        ):
            # Changed in place: the secret, and so the running tasks, stay as they are.
            updated = self._act(
                "update_client",
                service.name,
                lambda: self._registry.update(desired.client_id, desired.scopes, desired.audiences),
                f"updated the scopes and audiences of client {desired.client_id}",
            )
            return updated, True
        return client, False

    def _add_client(self, service: ObservedService, desired: DesiredIdentity) -> IssuedSecret:
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
        current: DockerSecret,
        managed_ids: Collection[str],
    ) -> bool:
        def edit(observed: ObservedService) -> tuple[Sequence[SecretRef], Sequence[str]] | None:
            return attach(observed, desired, current, managed_ids, self._policy.token_url)

        if edit(service) is None:
            return False
        return self._act(
            "update_service",
            service.name,
            lambda: self._swarm.update_service(service.id, edit),
            f"updated service to mount {current.name} at {desired.target}",
        )

    def _owned_elsewhere(self, client: ClientInfo) -> bool:
        if not client.service_id:
            return False
        other = self._swarm.get_service(client.service_id)
        try:
            return self._policy.wanted_client(other) == client.client_id
        except InvalidLabels:
            return True  # its owner may come back once its labels are fixed

    def _wanted_or_keep(self, service: ObservedService) -> str | None:
        try:
            return self._policy.wanted_client(service)
        except InvalidLabels:
            return _KEEP

    # -- retiring what a gone or unselected service left behind ------------------------

    def _collect_gone(self, ref: str, live: Collection[str]) -> Outcome:
        clients = self._registry.list()
        service_ids = {
            c.service_id
            for c in clients
            if c.managed
            and c.service_id
            and c.service_id not in live
            and (
                ref in (c.service_id, c.service_name) or (c.service_name or "").endswith(f"_{ref}")
            )
        }
        if self._swarm.list_secrets(service_secrets_filter(ref)):
            service_ids.add(ref)
        return worst(self._retire(sid, clients) for sid in sorted(service_ids))

    def _retire(self, service_id: str, clients: Sequence[ClientInfo]) -> Outcome:
        """Take away what a service should no longer have: its Docker secrets once it is
        gone or unselected, then the clients recorded for it that it no longer wants.

        Docker is re-read first, so a live selected service keeps its own. The client goes
        last because it is the record that the service was this registrar's: a live
        service without one (another registrar's, with another selector) is not touched,
        and a run that dies midway is finished by the next.
        """
        with self._locks.hold(f"service:{service_id}"):
            service = self._swarm.get_service(service_id)
            try:
                wanted = self._policy.wanted_client(service)
            except InvalidLabels:
                return Outcome.INVALID
            name = service.name if service else service_id
            stale = [
                c
                for c in clients
                if c.managed and c.service_id == service_id and c.client_id != wanted
            ]
            removed = False
            if wanted is None:
                if service is not None and not stale:
                    return Outcome.IGNORED
                managed = self._swarm.list_secrets(service_secrets_filter(service_id))
                removed |= self._detach(service, managed)
                removed |= self._delete_secrets(name, managed)
            if service is None:
                why = "its service is gone"
            elif wanted is None:
                why = "its service is no longer selected"
            else:
                why = f"its service now uses client {wanted}"
            for client in stale:
                with self._locks.hold(f"client:{client.client_id}"):
                    fresh = self._registry.get(client.client_id)
                    if fresh and fresh.managed and fresh.service_id == service_id:
                        removed |= self._remove_client(name, fresh, why)
            return Outcome.REMOVED if removed else Outcome.UNCHANGED

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

    # -- single writes: counted, logged, then the step hook ----------------------------

    def _act(self, kind: str, service_name: str, write: Callable[[], T], message: str) -> T:
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
            message,
            extra={"service": service_name, "action": kind},
        )
        self._after_step(kind)
        return result

    def _remove_client(self, service_name: str, client: ClientInfo, why: str) -> bool:
        return self._act(
            "remove_client",
            service_name,
            lambda: self._registry.remove(client.client_id),
            f"removed client {client.client_id} ({why})",
        )

    def _create_secret(
        self, service_name: str, client: ClientInfo, service_id: str, secret: str
    ) -> DockerSecret:
        name = secret_name(client, service_id)
        return self._act(
            "create_secret",
            service_name,
            lambda: self._swarm.create_secret(
                name, secret.encode(), secret_labels(client, service_id)
            ),
            f"created Docker secret {name}",
        )

    def _delete_secrets(self, service_name: str, stale: Iterable[DockerSecret]) -> bool:
        deleted = False
        for secret in stale:
            try:
                deleted |= self._act(
                    "delete_secret",
                    service_name,
                    lambda s=secret: self._swarm.delete_secret(s.id),
                    f"deleted Docker secret {secret.name}",
                )
            except Rejected as exc:  # e.g. someone mounted it on another service
                logger.warning(
                    "service %s: cannot delete Docker secret %s: %s", service_name, secret.name, exc
                )
        return deleted
