"""The token server's ASGI app in this process, on a real SQLite store in a temporary
directory, reached through httpx's ASGI transport: a handler is tested without a server
process. The subprocess tests (tests/support/server.py) cover what only a real process
shows (workers, signals, logs)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from swarm_oauth.api.app import create_app
from swarm_oauth.config import ServerSettings
from swarm_oauth.runtime import Runtime

ISSUER = "http://tokens.test"


class InProcessServer:
    """A runtime and its app; requests run the app in this process."""

    def __init__(self, data_dir: Path, role: str = "all", **fields: Any) -> None:
        """``fields``: further ``ServerSettings`` fields."""
        settings = ServerSettings(
            role=role,  # type: ignore[arg-type]
            data_dir=data_dir,
            issuer=ISSUER,
            **fields,
        )
        self.runtime = Runtime.open(settings)
        # What the app's lifespan does in a server; the ASGI transport runs no lifespan.
        self.runtime.start()
        self.app = create_app(self.runtime)
        token_file = data_dir / "admin-token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        self.admin_headers = {"Authorization": f"Bearer {token}"}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request to the app, answered as a server would (500s included)."""

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url=ISSUER) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request with the admin token."""
        headers = {**self.admin_headers, **kwargs.pop("headers", {})}
        return self.request(method, path, headers=headers, **kwargs)

    def close(self) -> None:
        self.runtime.close()


@pytest.fixture
def inprocess(tmp_path: Path) -> Iterator[InProcessServer]:
    """The ``all`` role in this process, on SQLite in a temporary directory."""
    server = InProcessServer(tmp_path / "data")
    yield server
    server.close()
