"""What a trigger's hint means in work-queue keys.

A Docker event names a service id, which is a key as it is. A swarm-listener notification
names a service by name (maybe a stack service's short name) or id, and the service may
be gone already; a full pass means every key that may need work. Both are resolved here,
against what Docker and the client registry report now, never against the hint's word.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from swarm_oauth.registrar.identities import Identities
from swarm_oauth.registrar.labels import InvalidLabels
from swarm_oauth.registrar.model import ClientInfo, Key, ObservedService, is_service_ref
from swarm_oauth.registrar.ports import ClientRegistry, Swarm
from swarm_oauth.registrar.spec import (
    MANAGED,
    SECRET_CLIENT_ID_LABEL,
    SERVICE_ID_LABEL,
    service_secrets_filter,
)


def keys_for_reference(ref: str, swarm: Swarm, registry: ClientRegistry) -> list[Key]:
    """The keys a service reference names: a service id, a service name, or a stack
    service's name without its ``<stack>_`` prefix (swarm-listener's ``shortName``).

    When no live service has exactly that id or name, what the registrar recorded for a
    gone service of that id or name is included too: its clients and its Docker secrets.
    A reference no Docker service can have names nothing.
    """
    if not is_service_ref(ref):
        return []
    service = swarm.get_service(ref)
    live = swarm.list_services()
    # The stack services it is the short name of count even beside a service named
    # exactly so: "api" may be a service of its own and the short name of "shop_api".
    keys = [
        Key.service(s.id)
        for s in live
        if s.stack_namespace and s.name == f"{s.stack_namespace}_{ref}"
    ]
    if service is not None:
        return [Key.service(service.id), *(k for k in keys if k.id != service.id)]
    live_ids = {s.id for s in live}
    keys += [
        Key.client(c.client_id)
        for c in registry.list()
        if c.managed
        and c.service_id not in live_ids
        and (ref in (c.service_id, c.service_name) or (c.service_name or "").endswith(f"_{ref}"))
    ]
    if swarm.list_secrets(service_secrets_filter(ref)):
        keys.append(Key.service(ref))
    return keys


@dataclass(frozen=True, slots=True)
class PassPlan:
    """The keys of one full pass, and the ids of the services it found selected."""

    keys: frozenset[Key]
    selected: frozenset[str]


def full_pass_keys(swarm: Swarm, registry: ClientRegistry, identities: Identities) -> PassPlan:
    """Every key that may need work: each selected service; each other service, live or
    gone, that Docker secrets of the registrar name; and each managed client that no live
    selected service wants and whose secrets are gone already (a client with secrets is
    retired by its service's key, after them)."""
    services = swarm.list_services()
    live = {s.id: s for s in services}
    selected = {s.id for s in services if identities.selected(s)}
    secrets = swarm.list_secrets(MANAGED)
    named = {
        (secret.labels.get(SECRET_CLIENT_ID_LABEL), service_id)
        for secret in secrets
        if (service_id := secret.labels.get(SERVICE_ID_LABEL))
    }
    keys = {Key.service(service_id) for service_id in selected}
    keys |= {Key.service(service_id) for _, service_id in named if service_id not in selected}
    keys |= {
        Key.client(c.client_id)
        for c in orphaned(registry.list(), live, identities)
        if (c.client_id, c.service_id) not in named
    }
    return PassPlan(frozenset(keys), frozenset(selected))


def orphaned(
    clients: Iterable[ClientInfo],
    live: dict[str, ObservedService],
    identities: Identities,
) -> list[ClientInfo]:
    """The managed clients whose recorded service is gone or no longer wants them.

    A service whose labels cannot be read keeps its client: a typo in a label must not
    cost a running service its identity.
    """
    found = []
    for client in clients:
        if not client.managed:
            continue
        try:
            wanted = identities.wanted_client(live.get(client.service_id or ""))
        except InvalidLabels:
            continue
        if wanted != client.name:
            found.append(client)
    return found
