"""In-memory stand-ins for Docker and the clients API, and checks of what they hold.

Unit tests of the reconcile logic, the work queue and the registrar's HTTP side use them,
so that every branch (each crash point, each conflict) is cheap to reach; the same
behaviour is shown on a real swarm in tests/swarm/. The stand-ins enforce the rules of the
real things that matter: unique secret names, no deleting a secret a service mounts, 409
on a taken client id.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from swarm_oauth.registrar.model import (
    ClientInfo,
    DockerConfig,
    DockerSecret,
    FreshSecret,
    ObservedService,
    SecretRef,
)
from swarm_oauth.registrar.ports import (
    Capabilities,
    Rejected,
    ServiceEdit,
    ServiceGone,
    TransientError,
)
from swarm_oauth.registrar.spec import (
    INCARNATION_LABEL,
    MANAGED,
    SECRET_CLIENT_ID_LABEL,
    SERVICE_ID_LABEL,
    VERSION_LABEL,
)
from tests.support.registrar import TOKEN_URL

SELECTED = {"swarm-oauth.client": "true"}


class FakeSwarm:
    """An in-memory swarm with the engine's rules that the registrar relies on."""

    def __init__(self) -> None:
        self.services: dict[str, ObservedService] = {}
        self.secrets: dict[str, tuple[DockerSecret, bytes]] = {}
        self.configs: dict[str, DockerConfig] = {}
        self.writes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.fail: type[Exception] | None = None
        self._ids = itertools.count(1)
        self.clock: Callable[[], float] = time.time
        # Secrets that tasks of a service still run with beyond its spec's (an update
        # rolling out): service id -> secret ids.
        self.old_tasks: dict[str, set[str]] = {}

    # test helpers
    def add_service(
        self, name: str, labels: Mapping[str, str] | None = None, **fields: Any
    ) -> ObservedService:
        service = ObservedService(
            id=f"svc{next(self._ids):04d}{secrets.token_hex(8)}",
            name=name,
            labels=dict(labels if labels is not None else SELECTED),
            **fields,
        )
        self.services[service.id] = service
        return service

    def set_service(self, service: ObservedService) -> None:
        self.services[service.id] = service

    def named(self, name: str) -> ObservedService:
        return next(s for s in self.services.values() if s.name == name)

    def data(self, secret_id: str) -> bytes:
        return self.secrets[secret_id][1]

    def managed_secrets(self) -> list[DockerSecret]:
        return self.list_secrets(MANAGED)

    # the port
    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail("engine unavailable")

    def list_services(self) -> list[ObservedService]:
        self._check()
        return list(self.services.values())

    def get_service(self, ref: str) -> ObservedService | None:
        self._check()
        return next((s for s in self.services.values() if ref in (s.id, s.name)), None)

    def list_secrets(self, labels: Mapping[str, str]) -> list[DockerSecret]:
        self._check()
        return [
            s
            for s, _ in self.secrets.values()
            if all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerSecret:
        self._check()
        with self.lock:
            if any(s.name == name for s, _ in self.secrets.values()):
                raise TransientError(f"secret {name} exists")
            secret = DockerSecret(f"sec{next(self._ids):04d}", name, dict(labels), self.clock())
            self.secrets[secret.id] = (secret, data)
            self.writes["create_secret"] += 1
        return secret

    def update_service(self, service_id: str, edit: ServiceEdit) -> bool:
        self._check()
        with self.lock:
            service = self.services.get(service_id)
            if service is None:
                raise ServiceGone(service_id)
            change = edit(service)
            if change is None:
                return False
            refs, env = change
            targets = [r.target for r in refs]
            if len(set(targets)) != len(targets):
                raise Rejected("duplicate secret target")
            self.set_service(replace(service, secret_refs=tuple(refs), env=tuple(env)))
            self.writes["update_service"] += 1
            return True

    def secrets_in_use(self, service_id: str) -> set[str]:
        self._check()
        service = self.services.get(service_id)
        running = {r.secret_id for r in service.secret_refs} if service else set()
        return running | self.old_tasks.get(service_id, set())

    def secret_exists(self, secret_id: str) -> bool:
        self._check()
        return secret_id in self.secrets

    def delete_secret(self, secret_id: str) -> bool:
        self._check()
        with self.lock:
            if secret_id not in self.secrets:
                return False
            users = [
                s.name
                for s in self.services.values()
                if any(r.secret_id == secret_id for r in s.secret_refs)
            ]
            if users:
                raise Rejected(f"secret is in use by {users}")
            del self.secrets[secret_id]
            self.writes["delete_secret"] += 1
            return True

    def list_configs(self, labels: Mapping[str, str]) -> list[DockerConfig]:
        self._check()
        return [
            c for c in self.configs.values() if all(c.labels.get(k) == v for k, v in labels.items())
        ]

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerConfig:
        self._check()
        with self.lock:
            if any(c.name == name for c in self.configs.values()):
                raise TransientError(f"config {name} exists")
            config = DockerConfig(f"cfg{next(self._ids):04d}", name, dict(labels))
            self.configs[config.id] = config
            self.writes["create_config"] += 1
        return config

    def delete_config(self, config_id: str) -> bool:
        self._check()
        with self.lock:
            if self.configs.pop(config_id, None) is None:
                return False
            self.writes["delete_config"] += 1
            return True

    def ping(self) -> None:
        self._check()


class FakeRegistry:
    """An in-memory clients API that remembers each client's secret to check it."""

    def __init__(self) -> None:
        self.clients: dict[str, ClientInfo] = {}
        self.secret_of: dict[str, str] = {}
        self.writes: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.fail: type[Exception] | None = None
        self.delay = 0.0
        self.previous_of: dict[str, tuple[str, float | None]] = {}
        self.clock: Callable[[], float] = time.time
        # How long a secret works, as a server that ends them (RFC 7591) says; None: ever.
        self.secret_lifetime: float | None = None

    def _check(self) -> None:
        if self.fail is not None:
            raise self.fail("clients API unavailable")

    capabilities = Capabilities()

    def find(self, name: str, service_id: str) -> ClientInfo | None:
        return self.get(name)

    def get(self, client_id: str) -> ClientInfo | None:
        self._check()
        return self.clients.get(client_id)

    def list(self) -> list[ClientInfo]:
        self._check()
        return list(self.clients.values())

    def add(
        self,
        client_id: str,
        scopes: Sequence[str],
        audiences: Sequence[str],
        metadata: Mapping[str, Any],
    ) -> FreshSecret:
        self._check()
        time.sleep(self.delay)
        with self.lock:
            if client_id in self.clients:
                raise TransientError("409")
            client = ClientInfo(client_id, 1, dict(metadata), tuple(scopes), tuple(audiences))
            return self._issue(client, "add")

    def remove(self, client_id: str) -> bool:
        self._check()
        with self.lock:
            self.secret_of.pop(client_id, None)
            if self.clients.pop(client_id, None) is None:
                return False
            self.writes["remove"] += 1
            return True

    def rotate(
        self, client_id: str, grace_seconds: int = 0, *, replace_current: bool = False
    ) -> FreshSecret:
        self._check()
        with self.lock:
            client = self.clients[client_id]
            if not replace_current:
                until = self.clock() + grace_seconds if grace_seconds else None
                self.previous_of[client_id] = (self.secret_of[client_id], until)
                client = replace(client, previous_secret_expires_at=until)
            return self._issue(replace(client, secret_version=client.secret_version + 1), "rotate")

    def accepts(self, client_id: str, secret: str) -> bool:
        """Whether a token request with this secret would be accepted now."""
        if self.secret_of.get(client_id) == secret:
            return True
        previous, until = self.previous_of.get(client_id, ("", None))
        return previous == secret and until is not None and self.clock() < until

    def update(self, client_id: str, scopes: Sequence[str], audiences: Sequence[str]) -> ClientInfo:
        self._check()
        with self.lock:
            if client_id not in self.clients:
                raise TransientError("404")
            client = replace(self.clients[client_id], scopes=tuple(scopes),
                             audiences=tuple(audiences))  # fmt: skip
            self.clients[client_id] = client
            self.writes["update"] += 1
            return client

    def _issue(self, client: ClientInfo, kind: str) -> FreshSecret:
        secret = secrets.token_urlsafe(32)
        if self.secret_lifetime is not None:
            client = replace(client, secret_expires_at=self.clock() + self.secret_lifetime)
        self.clients[client.client_id] = client
        self.secret_of[client.client_id] = secret
        self.writes[kind] += 1
        return FreshSecret(client, secret)

    def retire_previous(self, client_id: str) -> bool:
        return False

    def ping(self) -> None:
        self._check()

    def close(self) -> None:
        pass


def assert_converged(
    swarm: FakeSwarm, registry: FakeRegistry, name: str, target: str = "oauth_client_secret"
) -> tuple[ClientInfo, DockerSecret]:
    """The desired state (docs/architecture.md): one client, one current Docker secret holding its
    secret, mounted at the target, the env set, and nothing else of the registrar's."""
    service = swarm.named(name)
    client_id = service.labels.get("swarm-oauth.client-id", name)
    client = registry.clients[client_id]
    assert client.metadata["service_id"] == service.id
    assert client.metadata["service_name"] == name
    ours = swarm.list_secrets({**MANAGED, SERVICE_ID_LABEL: service.id})
    assert len(ours) == 1, ours
    secret = ours[0]
    assert secret.labels[SECRET_CLIENT_ID_LABEL] == client_id
    assert secret.labels[VERSION_LABEL] == str(client.secret_version)
    assert secret.labels[INCARNATION_LABEL] == client.metadata["incarnation"]
    assert swarm.data(secret.id) == registry.secret_of[client_id].encode()
    mounted = [r for r in service.secret_refs if r.secret_id == secret.id]
    assert mounted == [SecretRef(secret.id, secret.name, target, "0", "0", 0o444)]
    assert f"OAUTH_CLIENT_ID={client_id}" in service.env
    assert f"OAUTH_TOKEN_URL={TOKEN_URL}" in service.env
    assert f"OAUTH_CLIENT_SECRET_FILE=/run/secrets/{target}" in service.env
    return client, secret


def no_orphans(swarm: FakeSwarm, registry: FakeRegistry) -> None:
    live = {s.id for s in swarm.services.values() if s.labels.get("swarm-oauth.client") == "true"}
    for client in registry.clients.values():
        if client.managed:
            assert client.service_id in live, client
    for secret in swarm.managed_secrets():
        assert secret.labels[SERVICE_ID_LABEL] in live, secret
