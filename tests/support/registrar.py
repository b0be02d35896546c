"""The registrar's controller in this process, on whatever ports a test gives it, with
blocking helpers: a test can wait for what a trigger set going, and stop a run between
two steps (the crash cases)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from swarm_oauth.registrar.controller import Controller, PassOutcomes
from swarm_oauth.registrar.identities import Identities
from swarm_oauth.registrar.labels import Selector
from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.model import Key
from swarm_oauth.registrar.policy import Grant, RegistrationPolicy
from swarm_oauth.registrar.ports import ClientRegistry, Swarm
from swarm_oauth.registrar.reconcile import Outcome, Reconciler, StepHook, worst
from swarm_oauth.registrar.status import StatusBoard

TOKEN_URL = "http://oauth-tokens:8080/api/token"
WAIT = 30.0
PERMISSIVE = RegistrationPolicy(default=Grant(("*",), ("*",), ("*",)), source="a test policy")
"""Allows every client id, scope and audience: for tests of the reconcile itself."""


class InProcessRegistrar:
    """The registrar's controller and reconciler on any ports (the in-memory stand-ins or
    the real Docker Engine and clients API), with blocking helpers for tests.

    ``hint`` is what a swarm-listener notification does (resolve, enqueue) followed by
    waiting until the queue has drained; ``full_pass`` waits for a pass likewise.
    """

    def __init__(
        self,
        swarm: Swarm,
        registry: ClientRegistry,
        *,
        selector: str = "swarm-oauth.client=true",
        token_url: str = TOKEN_URL,
        policy: RegistrationPolicy = PERMISSIVE,
        reservation_seconds: float = 600.0,
        rotation_grace: float = 3600.0,
        after_step: StepHook | None = None,
        workers: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.identities = Identities(
            Selector.parse(selector), token_url, policy, rotation_grace=rotation_grace
        )
        self.board = StatusBoard()
        self.metrics = RegistrarMetrics(self.board)
        self.reconciler = Reconciler(
            swarm,
            registry,
            self.identities,
            board=self.board,
            reservation_seconds=reservation_seconds,
            rotation_grace=rotation_grace,
            after_step=after_step,
            observer=self.metrics,
            clock=clock,
        )
        self.controller = Controller(
            swarm, registry, self.reconciler, workers=workers, observer=self.metrics
        )
        self.controller.start()

    def runs(self) -> Counter[Outcome]:
        """How many reconcile runs ended with each outcome so far."""
        sample = self.metrics.registry.get_sample_value
        return Counter(
            {
                outcome: int(value)
                for outcome in Outcome
                if (value := sample("swarm_oauth_registrar_reconciles_total", {"outcome": outcome}))
            }
        )

    def hint(self, ref: str) -> Outcome:
        """Resolve ``ref`` to keys, reconcile them and whatever they lead to; the worst
        outcome of the keys themselves."""
        keys = self.controller.resolve(ref)
        outcomes = self.controller.queue.add(keys).wait(WAIT)
        self.drain()
        return worst(outcomes.values())

    def reconcile(self, key: Key) -> Outcome:
        """Enqueue one key; its outcome once the queue has drained."""
        outcome = self.controller.queue.add([key]).wait(WAIT)[key]
        self.drain()
        return outcome

    def full_pass(self) -> PassOutcomes:
        """A full pass, and the queue drained after it."""
        outcomes = self.controller.full_pass().result(WAIT)
        self.drain()
        return outcomes

    def drain(self) -> None:
        assert self.controller.queue.wait_idle(WAIT), "the work queue did not drain"

    def close(self) -> None:
        self.controller.close()


class Crash(Exception):
    """Stands for the registrar process dying between two steps."""


def crash_at(step: str, occurrence: int = 1) -> StepHook:
    """A step hook that raises ``Crash`` at the ``occurrence``-th ``step``."""
    seen = Counter[str]()

    def hook(name: str) -> None:
        seen[name] += 1
        if name == step and seen[name] == occurrence:
            raise Crash(step)

    return hook


@contextlib.contextmanager
def registrar_factory(
    swarm: Swarm, new_registry: Callable[[], ClientRegistry], **options: Any
) -> Iterator[Callable[..., InProcessRegistrar]]:
    """Make in-process registrars on ``swarm``, each with a registry of its own (as each
    process has), all closed at the end. A crashed one is simply not used again."""
    made: list[tuple[InProcessRegistrar, ClientRegistry]] = []

    def make(after_step: StepHook | None = None) -> InProcessRegistrar:
        registry = new_registry()
        registrar = InProcessRegistrar(swarm, registry, after_step=after_step, **options)
        made.append((registrar, registry))
        return registrar

    try:
        yield make
    finally:
        for registrar, registry in made:
            registrar.close()
            registry.close()
