"""The ``dcr`` backend on the real swarm, against two independent RFC 7591/7592 servers:
panva's oidc-provider, a certified OpenID provider, and swarm-oauth's own token server
(``POST /api/register``), each reachable from service containers.

The registrar runs in-process (so a test can stop it between two steps) and, once, as the
real ``swarm-oauth registrar --backend dcr`` process.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest

from swarm_oauth.registrar.dcr_api import DynamicRegistration
from swarm_oauth.registrar.docker_swarm import DockerSwarm
from swarm_oauth.registrar.reconcile import Outcome
from swarm_oauth.registrar.registrations import Registration, RegistrationBook
from swarm_oauth.registrar.sealing import Sealer
from tests.support.node_tools import oidc_provider
from tests.support.registrar import InProcessRegistrar, crash_at, registrar_factory
from tests.support.rig import TARGET, Rig, gateway, open_rig
from tests.support.swarm import wait_for

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def rig(
    docker_client: docker.DockerClient, base_image: str, run_id: str, tmp_path_factory: Any
) -> Iterator[Rig]:
    """Our token server: only for the registrar process's admin token here."""
    with open_rig(docker_client, run_id, tmp_path_factory.mktemp("registrar-dcr")) as opened:
        yield opened


@dataclass(frozen=True)
class DcrServer:
    """What the tests need of a registration server."""

    issuer: str
    registration_url: str
    initial_access_token: str
    token_url: str
    jwks_url: str
    audience: str


@pytest.fixture(scope="module", params=["oidc-provider", "swarm-oauth"])
def oidc(
    request: pytest.FixtureRequest,
    rig: Rig,
    docker_client: docker.DockerClient,
    node_tools: Path,
    tmp_path_factory: Any,
) -> Iterator[DcrServer]:
    """oidc-provider on every interface, its issuer at the address containers reach; or
    the rig's own token server, whose initial access token is its admin token."""
    if request.param == "swarm-oauth":
        issuer = rig.token_url.removesuffix("/api/token")
        yield DcrServer(
            issuer,
            f"{rig.clients_url}/api/register",
            rig.server.admin_token,
            rig.token_url,
            f"{rig.clients_url}/.well-known/jwks.json",
            issuer,
        )
        return
    log_dir = tmp_path_factory.mktemp("oidc")
    with oidc_provider(node_tools, log_dir, "0.0.0.0", gateway(docker_client)) as provider:
        yield DcrServer(
            provider.issuer,
            provider.registration_url,
            provider.initial_access_token,
            provider.token_url,
            provider.jwks_url,
            provider.audience,
        )


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: Any) -> Path:
    path = tmp_path_factory.mktemp("dcr-key") / "registration-key"
    path.write_bytes(secrets.token_bytes(32))
    return path


@pytest.fixture
def book(rig: Rig, key_file: Path) -> RegistrationBook:
    """The registration records on the engine, read with the registrar's key."""
    return RegistrationBook(DockerSwarm(rig.docker.api), Sealer.from_file(key_file))


@pytest.fixture
def reconcilers(
    rig: Rig, oidc: DcrServer, book: RegistrationBook
) -> Iterator[Callable[..., InProcessRegistrar]]:
    """In-process registrars with the dcr backend; each stands for one process."""
    with registrar_factory(
        DockerSwarm(rig.docker.api),
        lambda: DynamicRegistration(
            oidc.registration_url, book, initial_access_token=oidc.initial_access_token
        ),
        selector=rig.selector,
        token_url=oidc.token_url,
    ) as make:
        yield make


def records(book: RegistrationBook, rig: Rig, name: str) -> list[Registration]:
    service_id = rig.docker.api.inspect_service(name)["ID"]
    return book.of(name, service_id)


def at_server(book: RegistrationBook, record: Registration) -> httpx.Response:
    """What the client's configuration endpoint answers its registration access token."""
    credentials = book.credentials(record)
    bearer = {"Authorization": f"Bearer {credentials.access_token}"}
    return httpx.get(credentials.client_uri, headers=bearer, timeout=10)


def gone(book: RegistrationBook, record: Registration) -> bool:
    """Whether the server says it has no such client (RFC 7592 §2.1)."""
    return at_server(book, record).status_code == 401


def converged(rig: Rig, oidc: DcrServer, book: RegistrationBook, name: str) -> Registration:
    """Wait until ``name`` has one registration, its secret mounted and the environment
    naming the client the server chose; that registration."""
    state: dict[str, Any] = {}

    def check() -> Registration | None:
        spec = rig.docker.api.inspect_service(name)
        container = spec["Spec"]["TaskTemplate"]["ContainerSpec"]
        mine = book.of(name, spec["ID"])
        secrets_ = rig.secrets_of(spec["ID"])
        state.update(records=mine, secrets=secrets_, env=container.get("Env"))
        if len(mine) != 1 or len(secrets_) != 1:
            return None
        client_id = mine[0].client_id
        refs = [r for r in container.get("Secrets") or [] if r["SecretID"] == secrets_[0]["ID"]]
        env = container.get("Env") or []
        ok = (
            secrets_[0]["Spec"]["Labels"]["swarm-oauth.client-id"] == client_id
            and [r["File"]["Name"] for r in refs] == [TARGET]
            and f"OAUTH_CLIENT_ID={client_id}" in env
            and f"OAUTH_TOKEN_URL={oidc.token_url}" in env
        )
        return mine[0] if ok else None

    return wait_for(check, 60, 0.3, lambda: f"{name} not converged: {state}")


def test_a_service_gets_a_client_at_the_server_rotates_and_loses_it(
    rig, oidc, book, reconcilers, swarm_cleanup
):
    name = rig.service("dcr-svc", rig.labels(**{"swarm-oauth.scopes": "read"}))
    registrar = reconcilers()
    assert registrar.hint(name) is Outcome.CHANGED
    first = converged(rig, oidc, book, name)
    assert first.client_id != name  # the server chose it
    claims = rig.token_from_container(name, oidc.jwks_url, oidc.audience)
    assert (claims["client_id"], claims["iss"]) == (first.client_id, oidc.issuer)
    assert at_server(book, first).json()["scope"] == "read"

    registrar.controller.rotate(DockerSwarm(rig.docker.api).get_service(name), 3600).result(60)
    # The old client lasts until no task holds its secret (the rolling update), then goes.
    second = wait_for(
        lambda: (c := converged(rig, oidc, book, name)).client_id != first.client_id and c,
        120,
        0.5,
        "the rotation did not converge on a new client",
    )
    wait_for(lambda: gone(book, first), 120, 0.5, "the old client was not retired")
    claims = rig.token_from_container(name, oidc.jwks_url, oidc.audience)
    assert claims["client_id"] == second.client_id

    service_id = rig.docker.api.inspect_service(name)["ID"]
    rig.docker.api.remove_service(name)
    registrar.hint(service_id)
    wait_for(
        lambda: (
            gone(book, second) and not rig.secrets_of(service_id) and not book.of(name, service_id)
        ),
        60,
        0.3,
        "the client, its record or its Docker secret outlived the service",
    )


@pytest.mark.parametrize("step", ["add_client", "create_secret", "update_service"])
def test_a_crash_between_steps_converges(rig, oidc, book, reconcilers, swarm_cleanup, step):
    name = rig.service(f"dcr-crash-{step.split('_')[0]}")
    assert reconcilers(after_step=crash_at(step)).hint(name) is Outcome.FAILED
    crashed = records(book, rig, name)
    assert len(crashed) == 1  # the client was registered and recorded before the crash

    reconcilers().full_pass()
    final = converged(rig, oidc, book, name)
    if step == "add_client":
        # Its secret was lost with the process: the service was registered anew and the
        # client nobody can use was deleted at the server.
        assert final.client_id != crashed[0].client_id
        assert gone(book, crashed[0])
    else:
        assert final.client_id == crashed[0].client_id
    assert at_server(book, final).status_code == 200
    rig.token_from_container(name, oidc.jwks_url, oidc.audience)


def test_the_registrar_process_with_the_dcr_backend(
    rig, oidc, book, key_file, start_registrar, permissive_policy, tmp_path, swarm_cleanup
):
    token_file = tmp_path / "initial-access-token"
    token_file.write_text(oidc.initial_access_token + "\n")
    start_registrar(
        "--backend", "dcr",
        "--registration-url", oidc.registration_url,
        "--initial-access-token-file", str(token_file),
        "--registration-key-file", str(key_file),
        "--token-url", oidc.token_url,
        "--policy", str(permissive_policy),
    )  # fmt: skip
    name = rig.service("dcr-e2e")
    record = converged(rig, oidc, book, name)  # the Docker event brought it
    claims = rig.token_from_container(name, oidc.jwks_url, oidc.audience)
    assert claims["client_id"] == record.client_id

    service_id = rig.docker.api.inspect_service(name)["ID"]
    rig.docker.api.remove_service(name)
    wait_for(
        lambda: (
            gone(book, record)
            and not rig.secrets_of(service_id)
            and not rig.docker.api.configs(
                filters={"label": [f"swarm-oauth.service-id={service_id}"]}
            )
        ),
        60,
        0.3,
        "the client, its record or its Docker secret outlived the service",
    )
