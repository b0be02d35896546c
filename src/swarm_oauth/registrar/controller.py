"""The registrar's controller: triggers put keys in one work queue; workers reconcile them.

Every trigger goes through here. A Docker event or a swarm-listener notification
resolves to keys (``hints``) that are enqueued; a full pass lists what may need work,
enqueues all of it and waits for those keys. Requests for a full pass that arrive while
one runs share the next one instead of each running their own.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from typing import Protocol

from swarm_oauth.registrar.hints import full_pass_keys, keys_for_reference
from swarm_oauth.registrar.identities import Identities
from swarm_oauth.registrar.model import Key, ObservedService, Reservation
from swarm_oauth.registrar.ports import ClientRegistry, RegistrarError, Swarm
from swarm_oauth.registrar.queue import WorkQueue
from swarm_oauth.registrar.reconcile import Outcome, Reconciler
from swarm_oauth.registrar.status import StatusBoard

logger = logging.getLogger(__name__)

PassOutcomes = Counter[Outcome]


class PassObserver(Protocol):
    """Receives the end of each full pass, e.g. to export when it happened."""

    def full_pass(self, managed_services: int) -> None:
        """A full pass finished; ``managed_services`` were selected."""

    def pass_failed(self) -> None:
        """A full pass could not list Docker or the client registry."""


class Controller:
    """Owns the work queue and the reconciler; the one door for every trigger."""

    def __init__(
        self,
        swarm: Swarm,
        registry: ClientRegistry,
        reconciler: Reconciler,
        *,
        workers: int = 4,
        retry_delay: float = 1.0,
        observer: PassObserver | None = None,
        before_pass: Callable[[], object] = lambda: None,
    ) -> None:
        self._swarm = swarm
        self._registry = registry
        self._reconciler = reconciler
        self._observer = observer
        self._before_pass = before_pass
        self.queue = WorkQueue(reconciler.reconcile, workers=workers, retry_delay=retry_delay)
        # Why the last full pass could not list what it needs, until one can: an engine
        # may answer a ping and nothing else (a worker node, a socket proxy).
        self.pass_problem: str | None = None
        self._pass_lock = threading.Lock()
        # The pass that will plan next (requests join it) and whether one is running.
        self._next_pass: Future[PassOutcomes] | None = None
        self._running = False

    def start(self) -> None:
        """Start the workers."""
        self.queue.start()

    def close(self) -> None:
        """Finish the runs in progress and stop the workers."""
        self.queue.close()

    def holds_previous_secret(self, service: ObservedService) -> bool:
        """Whether a task of ``service`` still runs with a secret its spec no longer
        mounts (blocking: it reads Docker)."""
        return self._reconciler.holds_previous_secret(service)

    @property
    def board(self) -> StatusBoard:
        """What the reconciles last concluded about each service."""
        return self._reconciler.board

    @property
    def identities(self) -> Identities:
        """Which services are managed, and the identity each gets."""
        return self._reconciler.identities

    def reservations(self) -> list[Reservation]:
        """The client ids kept for removed services (blocking: it reads Docker)."""
        return self._reconciler.reservations()

    def release(self, client_id: str) -> bool:
        """Free a reserved client id now; False when it was not reserved."""
        return self._reconciler.release(client_id)

    @property
    def rotation_grace(self) -> float:
        """Seconds the previous secret works after a rotation, unless a request says."""
        return self._reconciler.rotation_grace

    def rotate(self, service: ObservedService, grace: float) -> Future[Outcome]:
        """Rotate ``service``'s client secret now, the old one working ``grace`` seconds
        longer. Resolves, once the service has been reconciled after the request, with
        ``CHANGED`` if a new secret was issued (by that run or by one already under way),
        or else with that run's outcome, the request then withdrawn."""
        requests = self._reconciler.rotation_requests
        request = requests.add(service.id, grace)
        key = Key.service(service.id)
        answer: Future[Outcome] = Future()

        def settle(reconciled: Future[Mapping[Key, Outcome]]) -> None:
            if requests.withdraw(service.id, request):
                answer.set_result(Outcome.CHANGED)
            elif (error := reconciled.exception()) is not None:
                answer.set_exception(error)
            else:
                # Not honoured: whatever the run changed, it issued no new secret.
                outcome = reconciled.result()[key]
                answer.set_result(Outcome.UNCHANGED if outcome is Outcome.CHANGED else outcome)

        self.queue.add([key]).future.add_done_callback(settle)
        return answer

    def enqueue(self, keys: Iterable[Key]) -> None:
        """Reconcile ``keys`` soon."""
        self.queue.add(keys)

    def resolve(self, ref: str) -> list[Key]:
        """The keys a service reference names (blocking: it reads Docker and the registry).

        Raises ``TransientError`` when they cannot be read right now.
        """
        return keys_for_reference(ref, self._swarm, self._registry)

    def full_pass(self) -> Future[PassOutcomes]:
        """A full pass that starts planning after this call; its outcomes, counted.

        Requested while another pass runs, it is the next one, which starts when that one
        ends and is shared by every request made meanwhile. The future raises
        ``RegistrarError`` when Docker or the registry cannot be listed.
        """
        with self._pass_lock:
            if self._next_pass is None:
                self._next_pass = Future()
                if not self._running:
                    self._start_pass_thread()
            return self._next_pass

    def _start_pass_thread(self) -> None:
        self._running = True
        threading.Thread(target=self._passes, name="full-pass", daemon=True).start()

    def _passes(self) -> None:
        while True:
            with self._pass_lock:
                future, self._next_pass = self._next_pass, None
                if future is None:
                    self._running = False
                    return
            try:
                future.set_result(self._run_pass())
            except Exception as exc:  # handed to whoever waits; they log it
                future.set_exception(exc)

    def _run_pass(self) -> PassOutcomes:
        self._before_pass()
        board = self._reconciler.board
        known = board.service_ids()
        try:
            plan = full_pass_keys(self._swarm, self._registry, self._reconciler.identities)
            self._reconciler.prune_reservations()
        except RegistrarError as exc:
            self.pass_problem = str(exc)
            if self._observer is not None:
                self._observer.pass_failed()
            raise
        self.pass_problem = None
        outcomes = Counter(self.queue.add(plan.keys).wait().values())
        # A service gone or unselected is forgotten when its own key runs; one removed
        # with nothing of the registrar's on it (refused, or its event lost) has no key to
        # run, and would stay on the board, and in the metrics, for ever. Entries made
        # since the pass began (a service created meanwhile) are not the pass's to judge.
        for stale in known - plan.selected:
            board.forget(stale)
        if self._observer is not None:
            self._observer.full_pass(len(plan.selected))
        logger.info(
            "full pass: %d selected services, %s",
            len(plan.selected),
            ", ".join(f"{o.value}={n}" for o, n in sorted(outcomes.items())) or "nothing",
        )
        return outcomes
