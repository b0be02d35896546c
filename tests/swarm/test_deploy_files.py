"""The deployment files as Docker reads them: the topology of docs/architecture.md, and the optional
overrides (swarm-listener, PostgreSQL, publishing) merged onto it.

`docker stack config` resolves and merges the files exactly as `docker stack deploy`
would, without an engine; the swarm-listener override is checked only this way, since its
image cannot be pulled here.
"""

from __future__ import annotations

import re
import shutil
from typing import Any
from urllib.parse import urlsplit

import pytest

from swarm_oauth.registrar.app import LISTENER_PREFIX
from swarm_oauth.registrar.command import DEFAULT_URL as REGISTRAR_URL
from swarm_oauth.registrar.command import registrar
from swarm_oauth.registrar.labels import DEFAULT_SELECTOR, Selector
from tests.support.deploy import DEMO_STACK_FILE, DEPLOY_DIR, STACK_FILE, stack_config
from tests.support.requirements import unavailable

LISTENER_FILE = DEPLOY_DIR / "stack.swarm-listener.yml"
POSTGRES_FILE = DEPLOY_DIR / "stack.postgres.yml"
PUBLISH_FILE = DEPLOY_DIR / "stack.publish.yml"
ISSUER = "http://oauth-tokens:8080"


@pytest.fixture(scope="module", autouse=True)
def _docker_cli() -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")


def secret_files(service: dict[str, Any]) -> dict[str, str]:
    """Stack secret name → the file it is mounted at."""
    return {s["source"]: f"/run/secrets/{s['target']}" for s in service.get("secrets", [])}


def test_stack_has_the_topology_of_the_design() -> None:
    stack = stack_config(STACK_FILE)
    services, networks = stack["services"], stack["networks"]
    clients, tokens, registrar = (
        services[name] for name in ("oauth-clients", "oauth-tokens", "registrar")
    )

    assert set(services) == {"oauth-clients", "oauth-tokens", "registrar"}
    encrypted = {"encrypted": ""}
    assert networks["service-management"] == {
        "driver": "overlay",
        "internal": True,
        "driver_opts": encrypted,
    }
    assert networks["oauth-public"]["driver_opts"] == encrypted
    assert networks["oauth-public"]["attachable"] is True
    assert networks["oauth-public"]["name"] == "oauth-public"
    assert set(clients["networks"]) == set(registrar["networks"]) == {"service-management"}
    assert set(tokens["networks"]) == {"oauth-public"}
    for service in services.values():
        assert service["init"] is True
        assert service["read_only"] is True
        assert service["deploy"]["endpoint_mode"] == "dnsrr"
    assert clients["command"] == ["serve", "--role", "clients"]
    assert tokens["command"] == ["serve", "--role", "tokens"]
    # One store: the same volume at the data dir, on the same (labelled) node.
    for server in (clients, tokens):
        assert server["volumes"] == [
            {"type": "volume", "source": "data", "target": "/var/lib/swarm-oauth"}
        ]
        assert server["environment"]["SWARM_OAUTH_DATA_DIR"] == "/var/lib/swarm-oauth"
        assert server["environment"]["SWARM_OAUTH_ISSUER"] == ISSUER
    assert clients["deploy"]["placement"] == tokens["deploy"]["placement"]
    # The secrets are the operator's, read through *_FILE; the public part lacks the admin
    # token, the admin part the master key (it never decrypts a signing key).
    assert all(secret["external"] for secret in stack["secrets"].values())
    assert "SWARM_OAUTH_MASTER_KEY_FILE" not in clients["environment"]
    for service, wanted in (
        (clients, {"admin-token": "ADMIN_TOKEN"}),
        (tokens, {"master-key": "MASTER_KEY"}),
        (registrar, {"admin-token": "ADMIN_TOKEN"}),
    ):
        files = secret_files(service)
        assert set(files) == set(wanted)
        for source, variable in wanted.items():
            assert service["environment"][f"SWARM_OAUTH_{variable}_FILE"] == files[source]
    # The registrar: the manager's Docker socket, and the URLs as services see them.
    assert registrar["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"} in (
        registrar["volumes"]
    )
    assert registrar["environment"]["SWARM_OAUTH_CLIENTS_URL"] == "http://oauth-clients:8080"
    assert registrar["environment"]["SWARM_OAUTH_TOKEN_URL"] == f"{ISSUER}/api/token"


def test_swarm_listener_override_notifies_the_registrar_on_the_management_network() -> None:
    stack = stack_config(STACK_FILE, LISTENER_FILE)
    listener = stack["services"]["swarm-listener"]
    registrar = stack["services"]["registrar"]

    assert listener["image"] == "dockerflow/docker-flow-swarm-listener:19.01.12-20"
    assert set(listener["networks"]) == {"service-management"}
    assert listener["deploy"]["endpoint_mode"] == "dnsrr"
    assert listener["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    env = listener["environment"]
    assert env["DF_NOTIFY_LABEL"] == Selector.parse(DEFAULT_SELECTOR).key
    for kind in ("create", "remove"):
        url = urlsplit(env[f"DF_NOTIFY_{kind.upper()}_SERVICE_URL"])
        assert (url.hostname, str(url.port)) == (
            "registrar",
            registrar["environment"]["SWARM_OAUTH_PORT"],
        )
        assert url.path == f"{LISTENER_PREFIX}/notify-{kind}"
    assert int(registrar["environment"]["SWARM_OAUTH_PORT"]) == urlsplit(REGISTRAR_URL).port
    assert set(stack["services"]) == {
        "oauth-clients",
        "oauth-tokens",
        "registrar",
        "swarm-listener",
    }


def test_postgres_override_gives_both_servers_the_database_url_secret() -> None:
    stack = stack_config(STACK_FILE, POSTGRES_FILE, env={"SWARM_OAUTH_TOKENS_REPLICAS": "3"})

    assert stack["secrets"]["database-url"]["external"] is True
    for name in ("oauth-clients", "oauth-tokens"):
        service = stack["services"][name]
        path = service["environment"]["SWARM_OAUTH_DATABASE_URL_FILE"]
        assert secret_files(service)["database-url"] == path
    assert stack["services"]["oauth-tokens"]["deploy"]["replicas"] == 3
    assert "database-url" not in secret_files(stack["services"]["registrar"])
    # The management network has no route out; the database network gives oauth-clients
    # one without letting anything else in (stack-only, not attachable).
    assert set(stack["services"]["oauth-clients"]["networks"]) == {
        "service-management",
        "database",
    }
    assert stack["networks"]["database"] == {
        "driver": "overlay",
        "driver_opts": {"encrypted": ""},
    }


def test_publish_override_publishes_the_token_endpoint_in_host_mode() -> None:
    stack = stack_config(STACK_FILE, PUBLISH_FILE, env={"SWARM_OAUTH_PUBLISHED_PORT": "18080"})

    assert stack["services"]["oauth-tokens"]["ports"] == [
        {"mode": "host", "target": 8080, "published": 18080, "protocol": "tcp"}
    ]
    assert "ports" not in stack["services"]["oauth-clients"]


def test_demo_caller_is_selected_by_default_and_joins_the_public_network() -> None:
    stack = stack_config(DEMO_STACK_FILE)
    default = Selector.parse(DEFAULT_SELECTOR)
    caller, callee = stack["services"]["caller"], stack["services"]["callee"]

    assert default.matches(caller["deploy"]["labels"])
    assert not default.matches(callee["deploy"].get("labels") or {})
    assert (
        caller["deploy"]["labels"]["swarm-oauth.audience"]
        == callee["environment"]["CALLEE_AUDIENCE"]
    )
    assert callee["environment"]["OAUTH_ISSUER"] == ISSUER
    assert stack["networks"]["oauth-public"] == {"name": "oauth-public", "external": True}


def test_dockerfile_builds_without_a_registry_frontend() -> None:
    text = (DEPLOY_DIR / "Dockerfile").read_text()

    # A "# syntax=" line makes BuildKit pull its frontend image, impossible without a
    # registry; the base image must stay a build argument.
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim$", text, re.MULTILINE)
    assert re.findall(r"^FROM (\S+)", text, re.MULTILINE) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]


@pytest.mark.parametrize(
    ("file", "env", "backend"),
    [
        (
            "registrar.hydra.yml",
            {"HYDRA_ADMIN_URL": "http://hydra:4445", "HYDRA_TOKEN_URL": "https://idp/token"},
            "hydra",
        ),
        (
            "registrar.dcr.yml",
            {"REGISTRATION_URL": "https://idp/register", "TOKEN_URL": "https://idp/token"},
            "dcr",
        ),
    ],
)
def test_a_registrar_stack_for_your_own_oauth_server(file, env, backend) -> None:
    stack = stack_config(DEPLOY_DIR / file, env=env)

    assert set(stack["services"]) == {"registrar"}  # no token server of ours
    service = stack["services"]["registrar"]
    environment = service["environment"]
    assert environment["SWARM_OAUTH_BACKEND"] == backend
    assert environment["SWARM_OAUTH_TOKEN_URL"] == "https://idp/token"
    # The image's port is the token server's; `registrar status` and the other
    # subcommands run in the container must find the registrar where they look.
    assert int(environment["SWARM_OAUTH_PORT"]) == urlsplit(REGISTRAR_URL).port
    # Every setting the file gives is one the registrar reads, and every file it names is
    # mounted there.
    known = {p.envvar for p in registrar.params if isinstance(p.envvar, str)}
    assert set(environment) <= known
    mounted = set(secret_files(service).values()) | {
        c["target"] for c in service.get("configs", [])
    }
    files = {v for k, v in environment.items() if k.endswith("_FILE")}
    assert files <= mounted
