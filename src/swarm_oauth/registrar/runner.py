"""The registrar assembled: adapters, rules, reconciler, controller, triggers, HTTP app."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette

from swarm_oauth.admin_token import SharedSecret
from swarm_oauth.registrar.app import create_app
from swarm_oauth.registrar.backends import BackendSettings, open_registry
from swarm_oauth.registrar.controller import Controller
from swarm_oauth.registrar.docker_swarm import DockerSwarm
from swarm_oauth.registrar.identities import DEFAULT_SECRET_MAX_AGE, Identities
from swarm_oauth.registrar.labels import DEFAULT_SELECTOR, MIN_SECRET_MAX_AGE, Selector
from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.policy import RegistrationPolicy
from swarm_oauth.registrar.policy_file import PolicyFile
from swarm_oauth.registrar.ports import RegistrarError
from swarm_oauth.registrar.reconcile import (
    DEFAULT_RESERVATION_SECONDS,
    DEFAULT_ROTATION_GRACE,
    Reconciler,
)
from swarm_oauth.registrar.status import StatusBoard
from swarm_oauth.registrar.triggers import EventWatcher, Resync

log = logging.getLogger("swarm_oauth.registrar")


@dataclass(frozen=True)
class RegistrarSettings:
    """What ``swarm-oauth registrar`` is configured with."""

    backend: BackendSettings
    token_url: str
    # Guards the registrar's own API (and, with the builtin backend, reaches the clients API).
    admin_token: str = field(repr=False)
    docker_host: str | None = None
    selector: str = DEFAULT_SELECTOR
    resync_seconds: float = 60.0
    events: bool = True
    workers: int = 4
    policy_file: Path | None = None
    reservation_seconds: float = DEFAULT_RESERVATION_SECONDS
    notify_token: str | None = field(default=None, repr=False)
    secret_max_age: float = DEFAULT_SECRET_MAX_AGE
    rotation_grace: float = DEFAULT_ROTATION_GRACE


class Registrar:
    """Owns every part; ``app`` starts the triggers with the server and stops them after."""

    def __init__(self, settings: RegistrarSettings) -> None:
        """Connect the parts; ``PolicyError`` when the policy file is unusable,
        ``BackendConfigError`` or ``SealingError`` when the backend's settings are."""
        self.settings = settings
        self.swarm = DockerSwarm.from_url(settings.docker_host)
        self.registry = open_registry(settings.backend, self.swarm)
        self.identities = Identities(
            Selector.parse(settings.selector),
            settings.token_url,
            secret_max_age=settings.secret_max_age,
            rotation_grace=settings.rotation_grace,
        )
        self.policy_file = (
            PolicyFile(
                settings.policy_file,
                self._apply_policy,
                max(MIN_SECRET_MAX_AGE, settings.rotation_grace),
            )
            if settings.policy_file is not None
            else None
        )
        board = StatusBoard()
        self.metrics = RegistrarMetrics(board)
        reconciler = Reconciler(
            self.swarm,
            self.registry,
            self.identities,
            board=board,
            reservation_seconds=settings.reservation_seconds,
            rotation_grace=settings.rotation_grace,
            observer=self.metrics,
        )
        self.controller = Controller(
            self.swarm,
            self.registry,
            reconciler,
            workers=settings.workers,
            observer=self.metrics,
            before_pass=self.policy_file.refresh if self.policy_file else lambda: None,
        )
        self.metrics.watch_queue(self.controller.queue.depth)
        self.resync = Resync(self.controller, settings.resync_seconds)
        self.watcher = (
            EventWatcher(self.swarm.service_events, self.controller) if settings.events else None
        )
        self.app: Starlette = create_app(
            self.controller,
            self.swarm,
            self.registry,
            self.metrics,
            admin_token=SharedSecret.of(settings.admin_token),
            notify_token=SharedSecret.of(settings.notify_token) if settings.notify_token else None,
            on_start=self.start,
            on_stop=self.stop,
        )

    def _apply_policy(self, policy: RegistrationPolicy) -> None:
        self.identities.policy = policy

    def start(self) -> None:
        """Start the workers, the event watcher and the periodic full pass (the first now)."""
        if self.policy_file is None:
            log.warning(
                "no registration policy: a service may take its own name as client id, or "
                "one starting with its stack's namespace and '_'; scopes and audiences asked "
                "for by labels are refused. Pass --policy FILE (SWARM_OAUTH_POLICY_FILE) to "
                "allow them."
            )
        self.controller.start()
        if self.watcher is not None:
            self.watcher.start()
        self.resync.start()

    def reload(self) -> None:
        """Re-read the policy file now and run a full pass (what SIGHUP does), and log
        what came of both: a reload nobody can see happen is one nobody can trust."""
        log.info("reload asked for: the policy file is read again and a full pass runs")
        # A new policy that applies says so itself ("policy reloaded").
        if self.policy_file is not None and not self.policy_file.refresh():
            if self.policy_file.problem is not None:
                log.error(
                    "the policy file is still unusable; the previous policy stays: %s",
                    self.policy_file.problem,
                )
            else:
                log.info("the policy file is unchanged; its policy stays in force")
        try:
            outcomes = self.controller.full_pass().result()
        except RegistrarError as exc:
            log.error("the full pass after the reload failed: %s", exc)
            return
        log.info("reload done: %d keys reconciled", sum(outcomes.values()))

    def stop(self) -> None:
        """Stop the triggers, finish the runs in progress, close connections."""
        if self.watcher is not None:
            self.watcher.stop()
        self.resync.stop()
        self.controller.close()
        self.registry.close()
