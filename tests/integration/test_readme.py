"""The README's one-machine walk-through, followed as written from a clean checkout.

The repository is cloned into a temporary directory and every shell block of "Quick
start" and "Try it with curl" runs there with bash, in order; a step that fails fails
the test. Two things differ from a reader's terminal, both so that parallel runs on one
machine cannot collide: the server listens on a free port instead of 8080 (the blocks'
``127.0.0.1:8080`` is rewritten to it, and ``SWARM_OAUTH_PORT`` tells the server and the
``clients`` commands), and ``./scripts/test`` is not run (it is this suite). The "Deploy
on a swarm" steps are followed by tests/swarm/test_deploy.py on the real swarm.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)


def section(readme: str, title: str) -> str:
    """The text under a heading, up to the next heading of any level (a ``#`` line inside
    a code block is a shell comment, not a heading)."""
    lines, fenced, inside = [], False, False
    for line in readme.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            if inside:
                break
            inside = line.lstrip("#").strip() == title
            continue
        if inside:
            lines.append(line)
    assert lines, f"README has no section {title!r}"
    return "".join(lines)


def blocks(readme: str, title: str) -> list[str]:
    return BLOCK.findall(section(readme, title))


def bash(script: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"README step failed:\n{script}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    target = tmp_path / "swarm-oauth"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    return target


def test_the_readme_walk_through_works_as_written(checkout: Path) -> None:
    readme = (checkout / "README.md").read_text()
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SWARM_OAUTH_", "VIRTUAL_ENV", "OAUTH_"))
    }
    env["SWARM_OAUTH_PORT"] = str(port)

    def literal(script: str) -> str:
        return script.replace("127.0.0.1:8080", f"127.0.0.1:{port}")

    install_and_serve, run_tests = blocks(readme, "Quick start")
    assert run_tests.strip() == "./scripts/test"
    assert install_and_serve.strip().endswith(".venv/bin/swarm-oauth serve")
    log = (checkout.parent / "serve.log").open("w")
    server = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", literal(install_and_serve)],
        cwd=checkout,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the server is bash's child: stop them together
    )
    try:
        deadline = time.monotonic() + 240  # a fresh venv and pip install first
        while True:
            assert server.poll() is None, (checkout.parent / "serve.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (checkout.parent / "serve.log").read_text()
            time.sleep(0.5)
        assert (checkout / "data" / "admin-token").exists()

        curl, cli = blocks(readme, "Try it with curl")
        out = bash(literal(curl), checkout, env)
        added, token, jwks, certs = out.split("\n", 3)
        assert json.loads(added)["client_id"] == "orders" and "client_secret" in added
        issued = json.loads(token)
        assert issued["token_type"] == "Bearer" and issued["scope"] == "read"
        assert json.loads(jwks)["keys"]
        assert certs.startswith("-----BEGIN CERTIFICATE-----")

        out = bash(literal(cli), checkout, env)
        listed = out[out.index('{\n  "clients"') :]
        assert [c["client_id"] for c in json.loads(listed)["clients"]] == ["billing", "orders"]
    finally:
        os.killpg(server.pid, 15)
        server.wait(20)
        log.close()
