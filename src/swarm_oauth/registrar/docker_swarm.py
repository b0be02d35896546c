"""The ``Swarm`` port on the Docker SDK: services, secrets and the service event stream."""

from __future__ import annotations

import contextlib
import copy
import datetime
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import docker
import docker.errors
import requests

from swarm_oauth.registrar.model import (
    DockerConfig,
    DockerSecret,
    ObservedService,
    SecretRef,
    is_service_ref,
)
from swarm_oauth.registrar.ports import Rejected, ServiceEdit, ServiceGone, TransientError

_UPDATE_ATTEMPTS = 8
# A task in any of these states has, or is about to have, its secrets mounted.
_LIVE_TASK_STATES = frozenset(
    {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"}
)


class DockerSwarm:
    """Talks to one Docker Engine (a swarm manager) through the low-level API client.

    ``writes`` counts every write by kind, so a caller can prove a pass wrote nothing.
    """

    def __init__(self, api: docker.APIClient) -> None:
        self._api = api
        self._writes_lock = threading.Lock()
        self.writes: Counter[str] = Counter()

    @classmethod
    def from_url(cls, base_url: str | None = None, timeout: int = 30) -> DockerSwarm:
        """Connect to ``base_url`` (e.g. ``unix:///var/run/docker.sock``), or to what the
        environment says (``DOCKER_HOST``) when None."""
        try:
            if base_url:
                api = docker.APIClient(base_url=base_url, version="auto", timeout=timeout)
            else:
                api = docker.from_env(version="auto", timeout=timeout).api
        except docker.errors.DockerException as exc:
            raise TransientError(f"cannot reach the Docker Engine: {exc}") from None
        return cls(api)

    # -- reads -------------------------------------------------------------------------

    def list_services(self) -> list[ObservedService]:
        """Every service of the swarm."""
        with _translated("list services"):
            return [_observed(raw) for raw in self._api.services()]

    def get_service(self, service_id_or_name: str) -> ObservedService | None:
        """The service whose id or name is exactly this, or None."""
        raw = self._inspect(service_id_or_name)
        return None if raw is None else _observed(raw)

    def list_secrets(self, labels: Mapping[str, str]) -> list[DockerSecret]:
        """Docker secrets carrying all these labels."""
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with _translated("list secrets"):
            raws = self._api.secrets(filters=filters)
        return [
            DockerSecret(
                raw["ID"],
                raw["Spec"]["Name"],
                dict(raw["Spec"].get("Labels") or {}),
                _timestamp(raw.get("CreatedAt")),
            )
            for raw in raws
        ]

    def secrets_in_use(self, service_id: str) -> set[str]:
        """Ids of the secrets that a task of the service runs with or is about to."""
        with _translated(f"list the tasks of {service_id}"):
            tasks = self._api.tasks(filters={"service": service_id})
        return {
            ref.get("SecretID", "")
            for task in tasks
            if (task.get("Status") or {}).get("State") in _LIVE_TASK_STATES
            for ref in task["Spec"].get("ContainerSpec", {}).get("Secrets") or ()
        }

    def list_configs(self, labels: Mapping[str, str]) -> list[DockerConfig]:
        """Docker configs carrying all these labels."""
        filters = {"label": [f"{key}={value}" for key, value in labels.items()]}
        with _translated("list configs"):
            raws = self._api.configs(filters=filters)
        return [
            DockerConfig(raw["ID"], raw["Spec"]["Name"], dict(raw["Spec"].get("Labels") or {}))
            for raw in raws
        ]

    def ping(self) -> None:
        """Raise ``TransientError`` unless the engine answers."""
        with _translated("ping the engine"):
            self._api.ping()

    def service_events(self) -> ServiceEventStream:
        """The engine's service events from now on; close the stream to stop reading."""
        with _translated("subscribe to service events"):
            stream = self._api.events(decode=True, filters={"type": "service"})
        return ServiceEventStream(stream)

    # -- writes ------------------------------------------------------------------------

    def create_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerSecret:
        """Create a Docker secret holding ``data``."""
        with _translated(f"create secret {name}"):
            created = self._api.create_secret(name, data, labels=dict(labels))
        self._count("create_secret")
        return DockerSecret(created["ID"], name, dict(labels))

    def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> DockerConfig:
        """Create a Docker config holding ``data``."""
        with _translated(f"create config {name}"):
            created = self._api.create_config(name, data, labels=dict(labels))
        self._count("create_config")
        return DockerConfig(created["ID"], name, dict(labels))

    def delete_config(self, config_id: str) -> bool:
        """Delete a Docker config; False if it was already gone."""
        try:
            with _translated(f"delete config {config_id}"):
                self._api.remove_config(config_id)
        except _Missing:
            return False
        self._count("delete_config")
        return True

    def update_service(self, service_id: str, edit: ServiceEdit) -> bool:
        """Apply ``edit`` to the spec as read, changing only its secrets and env.

        The update carries the version it read; when another writer got in between
        ("update out of sequence") the spec is read again and ``edit`` re-applied.
        """
        for _ in range(_UPDATE_ATTEMPTS):
            raw = self._inspect(service_id)
            if raw is None:
                raise ServiceGone(service_id)
            change = edit(_observed(raw))
            if change is None:
                return False
            spec = _edited_spec(raw["Spec"], *change)
            try:
                with _translated(f"update service {raw['Spec']['Name']}"):
                    self._api.update_service(
                        raw["ID"],
                        raw["Version"]["Index"],
                        task_template=spec["TaskTemplate"],
                        name=spec["Name"],
                        labels=spec.get("Labels") or {},
                        mode=spec.get("Mode"),
                        update_config=spec.get("UpdateConfig"),
                        rollback_config=spec.get("RollbackConfig"),
                        endpoint_spec=spec.get("EndpointSpec"),
                        networks=spec.get("Networks"),
                    )
            except _Missing:
                raise ServiceGone(service_id) from None
            except TransientError as exc:
                if "out of sequence" in str(exc):
                    continue
                raise
            self._count("update_service")
            return True
        raise TransientError(f"service {service_id} kept changing while being updated")

    def delete_secret(self, secret_id: str) -> bool:
        """Delete a Docker secret; False if it was already gone."""
        try:
            with _translated(f"delete secret {secret_id}"):
                self._api.remove_secret(secret_id)
        except _Missing:
            return False
        self._count("delete_secret")
        return True

    def secret_exists(self, secret_id: str) -> bool:
        """Whether a Docker secret with this id exists."""
        try:
            with _translated(f"inspect secret {secret_id}"):
                self._api.inspect_secret(secret_id)
        except _Missing:
            return False
        return True

    # -- helpers -----------------------------------------------------------------------

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        if not is_service_ref(ref):
            return None  # no service has it, and it must not reach a URL
        try:
            with _translated(f"inspect service {ref}"):
                try:
                    raw: dict[str, Any] = self._api.inspect_service(ref)
                except docker.errors.APIError as exc:
                    # The engine also reads a reference as an id prefix, and answers 400
                    # ("ambiguous") for a prefix of several ids: no service is named so.
                    if exc.status_code == 400:
                        return None
                    raise
        except _Missing:
            return None
        # The engine also resolves unique id prefixes; a hint must name a service exactly.
        if ref not in (raw.get("ID"), raw.get("Spec", {}).get("Name")):
            return None
        return raw

    def _count(self, kind: str) -> None:
        with self._writes_lock:
            self.writes[kind] += 1


class ServiceEventStream:
    """``(action, service id, service name)`` for each Docker service event."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        try:
            for event in self._stream:
                actor = event.get("Actor") or {}
                service_id = actor.get("ID") or ""
                name = (actor.get("Attributes") or {}).get("name", "")
                if service_id:
                    yield str(event.get("Action", "")), service_id, name
        except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
            raise TransientError(f"service event stream broke: {exc}") from None

    def close(self) -> None:
        """Stop the stream; a thread iterating it sees it end."""
        self._stream.close()


class _Missing(Rejected):
    """The engine answered 404 for the object named."""


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn the SDK's errors into the port's: 404 → ``_Missing``, 5xx and connection
    failures → ``TransientError``, other 4xx → ``Rejected``."""
    try:
        yield
    except docker.errors.NotFound:
        raise _Missing(what) from None
    except docker.errors.APIError as exc:
        reason = exc.explanation or str(exc)
        # 409 is a name clash: another writer got there first.
        if exc.status_code is None or exc.status_code >= 500 or exc.status_code == 409:
            raise TransientError(f"{what}: {reason}") from None
        raise Rejected(f"{what}: {reason}") from None
    except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
        raise TransientError(f"{what}: {type(exc).__name__}") from None


def _timestamp(value: Any) -> float:
    """Docker's RFC 3339 time (nanoseconds, ``Z``) as Unix time; 0 when unreadable."""
    if not isinstance(value, str):
        return 0.0
    whole, _, fraction = value.rstrip("Z").partition(".")
    try:
        moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
        return moment.timestamp() + float(f"0.{fraction or 0}")
    except ValueError:
        return 0.0


def _observed(raw: Mapping[str, Any]) -> ObservedService:
    spec = raw["Spec"]
    container = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
    return ObservedService(
        id=raw["ID"],
        name=spec["Name"],
        labels=dict(spec.get("Labels") or {}),
        secret_refs=tuple(_ref(item) for item in container.get("Secrets") or ()),
        env=tuple(container.get("Env") or ()),
    )


def _ref(item: Mapping[str, Any]) -> SecretRef:
    file = item.get("File") or {}
    return SecretRef(
        secret_id=item.get("SecretID", ""),
        secret_name=item.get("SecretName", ""),
        target=file.get("Name", ""),
        uid=file.get("UID", "0"),
        gid=file.get("GID", "0"),
        mode=int(file.get("Mode", 0o444)),
    )


def _ref_dict(ref: SecretRef) -> dict[str, Any]:
    return {
        "SecretID": ref.secret_id,
        "SecretName": ref.secret_name,
        "File": {"Name": ref.target, "UID": ref.uid, "GID": ref.gid, "Mode": ref.mode},
    }


def _edited_spec(
    spec: Mapping[str, Any], refs: Sequence[SecretRef], env: Sequence[str]
) -> dict[str, Any]:
    """The spec as read, with only ContainerSpec.Secrets and .Env replaced.

    A ref that is unchanged keeps its original entry, so fields this code does not model
    survive the round trip.
    """
    edited = copy.deepcopy(dict(spec))
    container = edited.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})
    original = {_ref(item): item for item in container.get("Secrets") or ()}
    if refs or "Secrets" in container:
        container["Secrets"] = [original.get(ref) or _ref_dict(ref) for ref in refs]
    if env or "Env" in container:
        container["Env"] = list(env)
    return edited
