"""dockerflow's swarm-listener, the real program, as the registrar's only trigger.

Each test runs ``swarm-oauth registrar`` with the Docker event stream off and its periodic
pass a day away, so after its start pass only swarm-listener's notifications can make it
act. swarm-listener notifies only for a label whose value is true, so this session's
services carry ``swarm-oauth.test-<run id>=true``: that key is both swarm-listener's
``DF_NOTIFY_LABEL`` and the registrar's selector, and no other session's services have it.
The notifications pass through a recorder (tests/support/swarm_listener.py) that shows what
swarm-listener sent and what it got back.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.rig import Rig, open_rig, settled, writes
from tests.support.swarm import create_service, running_container, unique_name, wait_for
from tests.support.swarm_listener import NotifyRecorder, SpecWrites

pytestmark = pytest.mark.docker

# No event stream and no periodic pass: after its start pass, the registrar acts on
# notifications only.
NOTIFICATIONS_ONLY = ("--no-events", "--resync-seconds", "86400")


@dataclass
class ListenerRig(Rig):
    """The token server of ``Rig``, with services selected by a label that is ``true``."""

    label_key: str = ""

    @property
    def selector(self) -> str:
        return f"{self.label_key}=true"

    def labels(self, **extra: str) -> dict[str, str]:
        return {self.label_key: "true", **extra}


@pytest.fixture(scope="module")
def rig(
    docker_client: Any, base_image: str, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ListenerRig]:
    """One token server for the module; the selector key is this session's."""
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("dfsl")) as opened:
        yield ListenerRig(
            opened.docker,
            opened.server,
            opened.selector_value,
            opened.token_url,
            label_key=f"swarm-oauth.test-{run_id}",
        )


def wait_until_forgotten(rig: ListenerRig, name: str, service_id: str, by: str) -> None:
    """Wait until ``name``'s client and Docker secrets are gone; ``by`` is what should
    have removed them, for the message."""
    wait_for(
        lambda: rig.client(name) is None and not rig.secrets_of(service_id),
        60,
        0.3,
        f"{by} left the client or the Docker secret of the removed service {name}",
    )


def statuses(recorder: NotifyRecorder, service: str, kind: str) -> list[int | None]:
    """The answers swarm-listener got for ``service``'s ``kind`` notifications, in order."""
    return [n.status for n in recorder.notifications(service, kind)]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_labelled_service_gets_its_identity_and_loses_it_through_swarm_listener(
    method,
    rig,
    start_registrar,
    permissive_policy,
    start_swarm_listener,
    notify_recorder,
    swarm_cleanup,
):
    registrar = start_registrar(*NOTIFICATIONS_ONLY, "--policy", str(permissive_policy))
    notify_recorder.upstream = registrar.url
    listener = start_swarm_listener(
        rig.label_key,
        DF_NOTIFY_CREATE_SERVICE_METHOD=method,
        DF_NOTIFY_REMOVE_SERVICE_METHOD=method,
    )

    name = rig.service("dfsl-svc", rig.labels(**{"swarm-oauth.scopes": "read"}))
    identity = rig.identity(name)
    claims = rig.token_from_container(name)
    assert (claims["sub"], claims["scope"]) == (name, "read")

    service_id = identity.client["metadata"]["service_id"]
    rig.docker.api.remove_service(name)
    wait_until_forgotten(rig, name, service_id, "the remove notification")
    sent = notify_recorder.notifications(name)
    assert {(n.method, n.kind, n.status) for n in sent} == {
        (method, "create", 200),
        (method, "remove", 200),
    }
    assert listener.failures() == []


def test_the_start_up_burst_over_twenty_services_converges_without_duplicate_work(
    rig, start_registrar, start_swarm_listener, notify_recorder, swarm_cleanup
):
    registrar = start_registrar(*NOTIFICATIONS_ONLY)
    notify_recorder.upstream = registrar.url
    names = [unique_name("dfsl-burst") for _ in range(20)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: create_service(rig.docker, n, rig.labels()), names))
    for name in names:  # swarm-listener's start-up pass notifies running services at once
        running_container(rig.docker, name, timeout=120)
    assert not any(rig.client(name) for name in names)  # nothing has told the registrar
    before = writes(registrar)

    with SpecWrites(rig.docker) as spec_writes:
        listener = start_swarm_listener(rig.label_key)
        identities = {name: rig.identity(name, timeout=180) for name in names}
        settled(rig, names)
    service_ids = {i.client["metadata"]["service_id"] for i in identities.values()}
    # One write of each spec (the secret and its environment), and nothing more.
    assert spec_writes.of(service_ids) == dict.fromkeys(service_ids, 1)
    after = writes(registrar)
    assert {kind: after[kind] - before[kind] for kind in after} == {
        "create_secret": 20,
        "update_service": 20,
    }
    for name in names:
        answers = statuses(notify_recorder, name, "create")
        assert answers and set(answers) == {200}, (name, answers)
    assert listener.failures() == []


def test_notifications_that_fail_while_the_registrar_restarts_are_retried(
    rig, start_registrar, start_swarm_listener, notify_recorder, swarm_cleanup
):
    first = start_registrar(*NOTIFICATIONS_ONLY)
    notify_recorder.upstream = first.url
    listener = start_swarm_listener(rig.label_key)  # a retry every second, up to 60
    earlier = rig.service("dfsl-earlier")
    earlier_id = rig.identity(earlier).client["metadata"]["service_id"]

    with SpecWrites(rig.docker) as spec_writes:
        first.stop()
        notify_recorder.upstream = None
        names = [rig.service("dfsl-restart") for _ in range(4)]
        wait_for(
            lambda: all(None in statuses(notify_recorder, name, "create") for name in names),
            60,
            0.3,
            lambda: f"not every create was tried while the registrar was down: {listener.log()}",
        )
        second = start_registrar(*NOTIFICATIONS_ONLY)
        notify_recorder.upstream = second.url

        identities = {name: rig.identity(name, timeout=120) for name in names}
        for name in names:  # failed, retried, and in the end delivered
            wait_for(
                lambda name=name: statuses(notify_recorder, name, "create")[-1] == 200,
                90,
                0.3,
                lambda name=name: f"{name}: {statuses(notify_recorder, name, 'create')}",
            )
            assert statuses(notify_recorder, name, "create")[0] is None
        settled(rig, [earlier, *names])
    service_ids = {i.client["metadata"]["service_id"] for i in identities.values()}
    # The start pass and the retried notifications did the work once between them; the
    # service registered before the restart was left as it was.
    assert spec_writes.of({earlier_id, *service_ids}) == dict.fromkeys(service_ids, 1)
    failures = listener.failures()
    assert failures and all("Retrying service created notification" in f for f in failures)


def test_a_removal_lost_while_the_registrar_was_down_is_repaired_by_its_start_pass(
    rig, start_registrar, start_swarm_listener, notify_recorder, swarm_cleanup
):
    first = start_registrar(*NOTIFICATIONS_ONLY)
    notify_recorder.upstream = first.url
    # No retries: the one remove notification is lost for good.
    listener = start_swarm_listener(rig.label_key, DF_RETRY_INTERVAL="0")
    name = rig.service("dfsl-lost")
    service_id = rig.identity(name).client["metadata"]["service_id"]

    first.stop()
    notify_recorder.upstream = None
    rig.docker.api.remove_service(name)
    wait_for(
        lambda: any(
            "ERROR" in line and f"serviceName={name}" in line for line in listener.failures()
        ),
        60,
        0.3,
        lambda: f"swarm-listener did not give up on the remove:\n{listener.log()}",
    )
    assert statuses(notify_recorder, name, "remove") == [None]
    assert rig.client(name) is not None and rig.secrets_of(service_id)

    second = start_registrar(*NOTIFICATIONS_ONLY)
    notify_recorder.upstream = second.url
    wait_until_forgotten(rig, name, service_id, "the start pass")
    assert statuses(notify_recorder, name, "remove") == [None]


def test_a_label_value_other_than_true_is_ignored_by_swarm_listener(
    rig, start_registrar, start_swarm_listener, notify_recorder, swarm_cleanup
):
    # This registrar selects the label with any value: only swarm-listener's own filter
    # keeps it from registering the service labelled false.
    registrar = start_registrar(*NOTIFICATIONS_ONLY, "--selector", rig.label_key)
    notify_recorder.upstream = registrar.url
    listener = start_swarm_listener(rig.label_key)
    ignored = rig.service("dfsl-false", rig.labels(**{rig.label_key: "false"}))
    version = rig.docker.api.inspect_service(ignored)["Version"]
    wanted = rig.service("dfsl-true")
    rig.identity(wanted)

    assert notify_recorder.notifications(ignored) == []
    assert rig.docker.api.inspect_service(ignored)["Version"] == version
    assert rig.client(ignored) is None
    assert not rig.secrets_of(rig.docker.api.inspect_service(ignored)["ID"])
    # Removed, first the ignored one: by the time the other's remove arrives, any
    # notification about it would have too.
    rig.docker.api.remove_service(ignored)
    rig.docker.api.remove_service(wanted)
    wait_for(
        lambda: statuses(notify_recorder, wanted, "remove") == [200],
        60,
        0.3,
        "no remove notification for the labelled service",
    )
    assert notify_recorder.notifications(ignored) == []
    assert listener.failures() == []


def test_a_notify_token_in_swarm_listener_urls_is_accepted_and_required(
    rig, start_registrar, start_swarm_listener, notify_recorder, swarm_cleanup, tmp_path
):
    token = secrets.token_urlsafe(32)
    token_file = tmp_path / "notify-token"
    token_file.write_text(token)
    registrar = start_registrar(*NOTIFICATIONS_ONLY, "--notify-token-file", str(token_file))
    notify_recorder.upstream = registrar.url
    # Without the token, and with retries off: refused once, and nothing happens.
    refusing = start_swarm_listener(rig.label_key, DF_RETRY_INTERVAL="0")
    refused = rig.service("dfsl-notoken")
    wait_for(
        lambda: any(f"serviceName={refused}" in line for line in refusing.failures()),
        60,
        0.3,
        "swarm-listener logged no refusal",
    )
    assert statuses(notify_recorder, refused, "create") == [401]
    assert rig.client(refused) is None
    refusing.container.remove(force=True)
    rig.docker.api.remove_service(refused)

    # With ?token= in the configured URLs, as an operator sets it.
    listener = start_swarm_listener(
        rig.label_key,
        DF_NOTIFY_CREATE_SERVICE_URL=notify_recorder.notify_url("create", token=token),
        DF_NOTIFY_REMOVE_SERVICE_URL=notify_recorder.notify_url("remove", token=token),
    )
    name = rig.service("dfsl-token")
    service_id = rig.identity(name).client["metadata"]["service_id"]
    rig.docker.api.remove_service(name)
    wait_until_forgotten(rig, name, service_id, "the remove notification")
    sent = notify_recorder.notifications(name)
    assert {(n.kind, n.status) for n in sent} == {("create", 200), ("remove", 200)}
    assert all(n.query["token"] == [token] for n in sent)  # the URL's query comes first
    assert listener.failures() == []
    # A wrong token is refused alike, and a caller that can send headers may use Bearer.
    query = f"serviceName={name}"
    wrong = httpx.get(f"{registrar.url}/v1/swarm-listener/notify-remove?token=x&{query}")
    assert wrong.status_code == 401
    bearer = httpx.post(
        f"{registrar.url}/v1/swarm-listener/notify-remove?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert bearer.status_code == 200
    registrar.stop()  # its log writer has written every line by the time it exits
    assert token not in registrar.log()
