"""The SDK imports with the bare distribution's dependencies only (httpx, PyJWT)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SERVER_ONLY = ["starlette", "uvicorn", "docker", "psycopg", "prometheus_client", "click"]
GLUE_ONLY = ["fastapi", "requests"]


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_importing_the_sdk_pulls_in_no_server_dependency() -> None:
    # httpx itself tries to load its optional command line, which imports click when it
    # is installed (as in this dev environment); only what the SDK adds on top counts.
    result = run(
        f"""
        import sys
        import httpx, jwt
        before = set(sys.modules)
        import swarm_oauth.sdk
        from swarm_oauth.sdk import TokenSource, Verifier
        added = {{name.split(".")[0] for name in set(sys.modules) - before}}
        print(sorted(added & set({SERVER_ONLY + GLUE_ONLY!r})))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_sdk_works_where_the_server_dependencies_are_not_installed() -> None:
    # Make every server-only and glue-only package unimportable, as in a bare install.
    result = run(
        f"""
        import sys
        import importlib.abc

        BLOCKED = {SERVER_ONLY + GLUE_ONLY!r}

        class Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, Absent())
        from swarm_oauth.sdk import BearerAuth, BearerTokenMiddleware, TokenSource, Verifier
        source = TokenSource("svc", "http://t/api/token", client_secret="s")
        Verifier(issuer="http://t", audience="svc")
        print(sorted(name for name in BLOCKED if name in sys.modules))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_package_root_imports_nothing() -> None:
    result = run(
        """
        import sys
        before = set(sys.modules)
        import swarm_oauth
        print(sorted(name for name in set(sys.modules) - before if name != "swarm_oauth"))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
