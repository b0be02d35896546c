"""Real PostgreSQL for tests.

By default a PRIVATE cluster is created from the installed server binaries (``initdb``,
``pg_ctl``): its own data directory under /tmp, listening on 127.0.0.1 on a free port with
trust authentication, stopped and deleted when the session ends. Setting
SWARM_OAUTH_TEST_POSTGRES_URL (a superuser URL, e.g. to a CI service container) uses that
server instead. With neither, tests that need PostgreSQL call ``unavailable``.

Fixtures:
- ``postgres_admin_url`` (session): a superuser URL to the server's ``postgres`` database.
- ``postgres_url``: a fresh, empty database of its own for one test, dropped afterwards.
- ``postgres_cluster_factory``: starts extra private clusters a test may stop and start
  (fault tests); they are deleted when the test ends.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from tests.support.requirements import unavailable
from tests.support.server import free_port

ENV_URL = "SWARM_OAUTH_TEST_POSTGRES_URL"
# The OS user that owns a private cluster when the tests run as root (PostgreSQL refuses
# to run as root); Debian's postgresql packages create it.
OS_USER = "postgres"
SUPERUSER = "postgres"


def find_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: from PATH, else the newest
    /usr/lib/postgresql/*/bin (Debian installs them there, off PATH)."""
    on_path = shutil.which("pg_ctl")
    if on_path and shutil.which("initdb"):
        bin_dir = Path(on_path).resolve().parent
        if (bin_dir / "initdb").exists():
            return bin_dir

    def version(path: str) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path))

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "pg_ctl").exists() and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    return None


def url_for(conninfo: str, dbname: str | None = None) -> str:
    """A ``postgresql://`` URL for ``conninfo`` (a URL or a key=value string), optionally
    naming another database: the store is opened by URL, never by key=value string."""
    params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items()}
    if dbname is not None:
        params["dbname"] = dbname
    user = quote(params.pop("user", ""), safe="")
    password = params.pop("password", None)
    auth = f"{user}:{quote(password, safe='')}@" if password else (f"{user}@" if user else "")
    host = params.pop("host", "")
    # A socket directory cannot go in the netloc; libpq accepts it as a query parameter.
    if host.startswith("/"):
        params["host"], host = host, ""
    port = params.pop("port", "")
    netloc = f"{auth}{host}{':' + port if port else ''}"
    database = quote(params.pop("dbname", ""), safe="")
    query = f"?{urlencode(params)}" if params else ""
    return f"postgresql://{netloc}/{database}{query}"


def _as_owner(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as root, run its tools as the postgres user.
    if os.geteuid() == 0:
        return ["runuser", "-u", OS_USER, "--", *cmd]
    return cmd


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster: own data directory, port and server process."""

    bin_dir: Path
    root: Path
    port: int
    # Set by the first start: any start after it is a restart, which keeps the port.
    started_before: bool = field(default=False, init=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def url(self) -> str:
        """A superuser URL to the cluster's ``postgres`` database."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def create(cls, bin_dir: Path) -> PostgresCluster:
        """Initialise a cluster in a new temporary directory and start it."""
        # Not pytest's tmp_path: its parents are mode 0700 root, which the postgres user
        # cannot traverse.
        root = Path(tempfile.mkdtemp(prefix="swarm-oauth-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, OS_USER, OS_USER)
        cluster = cls(bin_dir=bin_dir, root=root, port=free_port())
        try:
            cluster._run(
                str(bin_dir / "initdb"),
                "-D",
                str(cluster.data_dir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            cluster.start()
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def _run(self, *cmd: str) -> None:
        done = subprocess.run(_as_owner(list(cmd)), capture_output=True, text=True, check=False)
        if done.returncode != 0:
            log = (
                self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
            )
            raise RuntimeError(f"{' '.join(cmd)} failed: {done.stdout}{done.stderr}\n{log}")

    def start(self, restart_timeout: float = 30.0) -> None:
        """Start the server on its port and wait until it accepts connections.

        At the first start another process may have taken the port since it was chosen;
        then new ones are tried. A restart keeps the port, which the URLs handed out name:
        it is tried again until ``restart_timeout`` seconds pass, then this fails.
        """
        deadline = time.monotonic() + restart_timeout
        for attempt in itertools.count(1):
            logged = self.log_path.stat().st_size if self.log_path.exists() else 0
            try:
                self._pg_ctl_start()
                self.started_before = True
                return
            except RuntimeError:
                with self.log_path.open("rb") as log:
                    log.seek(logged)
                    if b"could not bind" not in log.read():  # in this attempt's lines
                        raise
                if not self.started_before:
                    if attempt == 3:
                        raise
                    self.port = free_port()
                elif time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"cannot restart PostgreSQL: port {self.port}, which its URLs name, "
                        f"was still taken after {restart_timeout:g} s"
                    ) from None
                else:
                    time.sleep(0.5)

    def _pg_ctl_start(self) -> None:
        # fsync off: test data need not survive a machine crash, and the 2-core machines
        # are shared; a clean or fast shutdown still keeps everything.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} "
            "-c max_connections=300 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown: sessions are disconnected, data is kept)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            )

    def destroy(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _require_binaries() -> Path:
    bin_dir = find_binaries()
    if bin_dir is None:
        unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or in "
            f"/usr/lib/postgresql/*/bin, and {ENV_URL} is not set"
        )
    assert bin_dir is not None
    return bin_dir


def _start_cluster(bin_dir: Path) -> PostgresCluster:
    try:
        return PostgresCluster.create(bin_dir)
    except (RuntimeError, OSError) as exc:
        unavailable(f"could not start a private PostgreSQL cluster: {exc}")
        raise


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A superuser URL to a PostgreSQL server for this test session."""
    external = os.environ.get(ENV_URL)
    if external:
        try:
            with psycopg.connect(external, connect_timeout=5):
                pass
        except psycopg.Error as exc:
            unavailable(f"{ENV_URL} is set but its server does not answer: {exc}")
        yield url_for(external)
        return
    cluster = _start_cluster(_require_binaries())
    try:
        yield cluster.url
    finally:
        cluster.destroy()


def create_database(admin_url: str) -> str:
    """Create an empty database with a unique name; return its URL."""
    name = f"swarm_oauth_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return url_for(admin_url, name)


def drop_database(admin_url: str, url: str) -> None:
    """Drop the database named by ``url``, disconnecting whoever still uses it."""
    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for this test alone."""
    url = create_database(postgres_admin_url)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def postgres_cluster_factory() -> Iterator[Callable[[], PostgresCluster]]:
    """Start private clusters that the test may ``stop()`` and ``start()`` again."""
    bin_dir = _require_binaries()
    clusters: list[PostgresCluster] = []

    def start() -> PostgresCluster:
        cluster = _start_cluster(bin_dir)
        clusters.append(cluster)
        return cluster

    yield start
    for cluster in clusters:
        cluster.destroy()
