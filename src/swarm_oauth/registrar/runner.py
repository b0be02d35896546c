"""The registrar assembled: adapters, reconciler, controller, triggers and the ASGI app."""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.applications import Starlette

from swarm_oauth.registrar.app import create_app
from swarm_oauth.registrar.clients_api import ClientsAPI
from swarm_oauth.registrar.controller import Controller
from swarm_oauth.registrar.docker_swarm import DockerSwarm
from swarm_oauth.registrar.metrics import RegistrarMetrics
from swarm_oauth.registrar.policy import DEFAULT_SELECTOR, Policy, Selector
from swarm_oauth.registrar.reconcile import Reconciler
from swarm_oauth.registrar.triggers import EventWatcher, Resync


@dataclass(frozen=True)
class RegistrarSettings:
    """What ``swarm-oauth registrar`` is configured with."""

    clients_url: str
    token_url: str
    admin_token: str = field(repr=False)
    docker_host: str | None = None
    selector: str = DEFAULT_SELECTOR
    resync_seconds: float = 60.0
    events: bool = True
    workers: int = 4


class Registrar:
    """Owns every part; ``app`` starts the triggers with the server and stops them after."""

    def __init__(self, settings: RegistrarSettings) -> None:
        self.settings = settings
        self.swarm = DockerSwarm.from_url(settings.docker_host)
        self.registry = ClientsAPI(settings.clients_url, settings.admin_token)
        self.metrics = RegistrarMetrics()
        reconciler = Reconciler(
            self.swarm,
            self.registry,
            Policy(Selector.parse(settings.selector), settings.token_url),
            observer=self.metrics,
        )
        self.controller = Controller(
            self.swarm, self.registry, reconciler, workers=settings.workers, observer=self.metrics
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
            self.metrics.registry,
            on_start=self.start,
            on_stop=self.stop,
        )

    def start(self) -> None:
        """Start the workers, the event watcher and the periodic full pass (the first now)."""
        self.controller.start()
        if self.watcher is not None:
            self.watcher.start()
        self.resync.start()

    def stop(self) -> None:
        """Stop the triggers, finish the runs in progress, close connections."""
        if self.watcher is not None:
            self.watcher.stop()
        self.resync.stop()
        self.controller.close()
        self.registry.close()
