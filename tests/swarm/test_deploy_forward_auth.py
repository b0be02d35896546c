"""The Traefik forward-auth recipe (deploy/forward-auth/traefik.yml) as Docker reads it.

Traefik's image cannot be pulled here, so its labels are checked against what they must
meet: the token server of deploy/stack.yml at its address, the query the forward-auth
endpoint accepts, and the same requirements as the nginx and Caddy recipes, which
tests/integration/test_forward_auth_proxies.py runs with real proxies.
"""

from __future__ import annotations

import re
import shutil
from urllib.parse import urlsplit

import pytest

from swarm_oauth.api.forward_auth import VERIFY_PATH, requirements
from tests.support.deploy import STACK_FILE, stack_config
from tests.support.proxies import RECIPES, TOKENS_ADDRESS
from tests.support.requirements import unavailable

TRAEFIK_FILE = RECIPES / "traefik.yml"
IDENTITY_HEADERS = ["X-Auth-Client-Id", "X-Auth-Scope", "X-Auth-Audience"]


@pytest.fixture(scope="module", autouse=True)
def _docker_cli() -> None:
    if shutil.which("docker") is None:
        unavailable("the docker CLI is not installed")


def recipe_query(name: str) -> str:
    """The forward-auth query string a tested recipe uses."""
    match = re.search(rf"{VERIFY_PATH}\?(\S+?);?$", (RECIPES / name).read_text(), re.MULTILINE)
    assert match, f"{name} calls no {VERIFY_PATH}"
    return match.group(1)


def test_traefik_labels_send_every_request_to_the_forward_auth_endpoint() -> None:
    env = {"SWARM_OAUTH_PUBLIC_NETWORK": "oauth-public-test"}
    stack = stack_config(TRAEFIK_FILE, env=env)
    oauth = stack_config(STACK_FILE, env=env)
    traefik, app = stack["services"]["traefik"], stack["services"]["app"]
    labels = app["deploy"]["labels"]

    assert labels["traefik.enable"] == "true"
    (middleware,) = labels["traefik.http.routers.app.middlewares"].split(",")
    forward_auth = f"traefik.http.middlewares.{middleware}.forwardauth"
    address = urlsplit(labels[f"{forward_auth}.address"])
    issuer = oauth["services"]["oauth-tokens"]["environment"]["SWARM_OAUTH_ISSUER"]
    assert f"{address.scheme}://{address.netloc}" == issuer == f"http://{TOKENS_ADDRESS}"
    assert address.path == VERIFY_PATH
    # A query the endpoint accepts, asking what the recipes tested for real ask.
    assert requirements(address.query.encode()) == ("orders", ("read",))
    assert address.query == recipe_query("nginx.conf") == recipe_query("Caddyfile")
    assert labels[f"{forward_auth}.authResponseHeaders"].split(",") == IDENTITY_HEADERS

    # Traefik reaches the token server and the service on the public network of the
    # token server's stack, and exposes only what asks for it.
    public = oauth["networks"]["oauth-public"]["name"]
    assert stack["networks"]["oauth-public"] == {"name": public, "external": True}
    assert set(traefik["networks"]) == set(app["networks"]) == {"oauth-public"}
    assert f"--providers.swarm.network={public}" in traefik["command"]
    assert "--providers.swarm.exposedByDefault=false" in traefik["command"]
    assert traefik["deploy"]["placement"]["constraints"] == ["node.role == manager"]
