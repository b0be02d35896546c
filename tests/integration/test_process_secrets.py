"""Secrets stay where only their owner reads them: never in a worker's environment or
command line, and the embedded store's files private whatever the umask."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import httpx
import pytest

from swarm_oauth.keys.master import MasterKey
from swarm_oauth.secretfiles import make_private_dir
from swarm_oauth.store.sqlite import SQLiteStore


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (uvicorn's workers and multiprocessing's helper)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def exposed(pid: int, values: list[str]) -> list[str]:
    """Which of ``values`` appear in the process's environment or command line."""
    text = b"".join(
        Path(f"/proc/{pid}/{name}").read_bytes() for name in ("environ", "cmdline")
    ).decode(errors="replace")
    return [value for value in values if value in text]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.postgres
def test_worker_processes_get_no_secret_through_environment_or_command_line(
    server_factory, postgres_url
):
    password = "pw-" + secrets.token_hex(12)
    # Trust authentication ignores the password, but it travels like a real one.
    user, _, rest = postgres_url.removeprefix("postgresql://").partition("@")
    database_url = f"postgresql://{user.split(':')[0]}:{password}@{rest}"
    master_key, admin_token = MasterKey.generate_text(), secrets.token_urlsafe(32)
    server = server_factory(
        args=["--workers", "2"],
        env={
            "SWARM_OAUTH_DATABASE_URL": database_url,
            "SWARM_OAUTH_MASTER_KEY": master_key,
            "SWARM_OAUTH_ADMIN_TOKEN": admin_token,
        },
    )
    headers = {"Authorization": f"Bearer {admin_token}"}
    added = httpx.post(
        server.url + "/api/clients/add", json={"client_id": "svc"}, headers=headers, timeout=10
    )
    assert added.status_code == 201
    assert server.token("svc", added.json()["client_secret"]).status_code == 200
    workers = descendants(server.proc.pid)
    answering = {httpx.get(server.url + "/healthz", timeout=10).json()["pid"] for _ in range(20)}
    assert answering <= set(workers) and len(workers) >= 2
    for pid in workers:
        assert exposed(pid, [password, master_key, admin_token]) == [], pid
    # The check can fail: the parent was started with all three in its environment.
    assert exposed(server.proc.pid, [password, master_key, admin_token]) == [
        password,
        master_key,
        admin_token,
    ]


@pytest.mark.parametrize("umask", [0o022, 0o000])
def test_the_data_dir_and_its_files_are_private_whatever_the_umask(server_factory, umask):
    previous = os.umask(umask)
    try:
        server = server_factory()
    finally:
        os.umask(previous)
    server.add_client("svc")  # writes, so the WAL and its index exist
    data_dir = server.data_dir
    assert mode(data_dir) == 0o700
    for name in ("swarm-oauth.db", "swarm-oauth.db-wal", "swarm-oauth.db-shm"):
        assert mode(data_dir / name) == 0o600, name
    for name in ("master.key", "admin-token"):
        assert mode(data_dir / name) == 0o600, name


def test_an_existing_data_dir_and_store_files_left_readable_are_made_private(server_factory):
    data_dir = server_factory().data_dir
    # As an older version or a umask of 022 would have left them.
    (data_dir / "swarm-oauth.db").chmod(0o644)
    data_dir.chmod(0o755)
    store = SQLiteStore(data_dir / "swarm-oauth.db")
    try:
        for name in ("swarm-oauth.db", "swarm-oauth.db-wal", "swarm-oauth.db-shm"):
            assert mode(data_dir / name) == 0o600, name
    finally:
        store.close()
    make_private_dir(data_dir)
    assert mode(data_dir) == 0o700
