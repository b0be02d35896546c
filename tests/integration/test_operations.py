"""What an operator runs: commands from a directory of their own, the way ``serve`` was
configured, output for a person and for a program, ``swarm-oauth token``."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import jwt
import pytest

from swarm_oauth.cli.clients import default_url
from swarm_oauth.timestamps import relative, span
from tests.support.cli import run_cli, run_cli_on_terminal

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def admin_env(server):
    """How a shell on the server's machine finds it: the variables ``serve`` reads."""
    return {"SWARM_OAUTH_PORT": str(server.port), "SWARM_OAUTH_DATA_DIR": str(server.data_dir)}


# -- stores only ``serve`` creates ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("keys", "list"),
        ("keys", "rotate"),
        ("keys", "retire", "some-kid"),
        ("db", "upgrade"),
        ("keys", "list", "--data-dir", "elsewhere"),
        ("keys", "list", "--database-url", "sqlite:///other.db"),
    ],
)
def test_commands_other_than_serve_never_create_a_store(tmp_path, args):
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert "no store at " in result.stderr and str(tmp_path) in result.stderr
    assert "swarm-oauth serve" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no ./data, no database file


@pytest.mark.postgres
def test_a_database_without_the_schema_is_not_a_store(postgres_url, tmp_path):
    from swarm_oauth.store import open_store

    result = run_cli("keys", "list", "--database-url", postgres_url, cwd=tmp_path)
    assert result.returncode == 2 and "holds no swarm-oauth store" in result.stderr
    assert postgres_url not in result.stderr  # a URL may carry a password
    store = open_store(postgres_url, tmp_path)
    try:
        assert store.initialized() is False  # the command created no table either
    finally:
        store.close()


@pytest.mark.postgres
@pytest.mark.parametrize("args", [("keys", "list"), ("db", "upgrade"), ("serve", "--port", "0")])
def test_a_database_that_refuses_the_connection_is_one_line_saying_why(
    postgres_url, tmp_path, args
):
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    result = run_cli(*args, "--database-url", missing, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: postgresql: no connection within")
    assert 'database "no_such_database" does not exist' in result.stderr


def test_the_store_commands_work_from_another_directory_with_the_servers_variable(
    token_server, tmp_path
):
    listed = run_cli("keys", "list", env=admin_env(token_server), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert [k["state"] for k in json.loads(listed.stdout)["keys"]] == ["signing"]


# -- finding the clients API ------------------------------------------------------------


def test_clients_options_may_follow_the_subcommand(token_server, tmp_path):
    url, token_file = token_server.url, str(token_server.data_dir / "admin-token")
    added = run_cli(
        "clients", "add", "billing", "--url", url, "--admin-token-file", token_file, cwd=tmp_path
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["client_id"] == "billing"
    before = run_cli("clients", "--url", url, "--admin-token-file", token_file, "show", "billing")
    assert json.loads(before.stdout)["client_id"] == "billing"
    # Given twice, the later one wins: a wrong URL before, the right one after.
    both = run_cli(
        "clients", "--url", "http://127.0.0.1:9", "list", "--url", url,
        "--data-dir", str(token_server.data_dir), cwd=tmp_path,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert [c["client_id"] for c in json.loads(both.stdout)["clients"]] == ["billing"]


def test_clients_commands_find_the_server_as_serve_was_told(token_server, tmp_path):
    listed = run_cli("clients", "list", env=admin_env(token_server), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"clients": []}
    elsewhere = run_cli("clients", "list", env={"SWARM_OAUTH_PORT": "9"}, cwd=tmp_path)
    assert elsewhere.returncode == 2
    assert "http://127.0.0.1:9" in elsewhere.stderr and "Traceback" not in elsewhere.stderr


def test_the_default_url_is_where_serve_listens():
    assert default_url({}) == "http://127.0.0.1:8080"
    assert default_url({"SWARM_OAUTH_HOST": "0.0.0.0", "SWARM_OAUTH_PORT": "9000"}) == (
        "http://127.0.0.1:9000"
    )
    assert default_url({"SWARM_OAUTH_HOST": "::"}) == "http://[::1]:8080"
    assert default_url({"SWARM_OAUTH_HOST": "10.0.0.5"}) == "http://10.0.0.5:8080"


def test_clients_commands_say_what_went_wrong(token_server, tmp_path):
    env = admin_env(token_server)
    assert run_cli("clients", "add", "orders", env=env).returncode == 0
    again = run_cli("clients", "add", "orders", env=env)
    assert again.returncode == 1 and "already exists" in again.stderr
    missing = run_cli("clients", "show", "nobody", env=env)
    assert missing.returncode == 1 and "no client 'nobody'" in missing.stderr
    bad = run_cli("clients", "add", "bad id", env=env)
    assert bad.returncode == 1 and "client_id must be" in bad.stderr
    no_token = run_cli("clients", "list", env={**env, "SWARM_OAUTH_DATA_DIR": str(tmp_path)})
    assert no_token.returncode == 2 and str(tmp_path / "admin-token") in no_token.stderr


class _Elsewhere(BaseHTTPRequestHandler):
    """Not the clients API: a web server that answers every request with a 404 page."""

    def _page(self) -> None:
        page = b"<html><body>404 Not Found</body></html>"
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)

    do_GET = do_POST = _page

    def log_message(self, *args: object) -> None:
        pass


def test_a_404_that_is_not_the_clients_api_is_not_a_client_gone(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"SWARM_OAUTH_ADMIN_TOKEN": "t0ken", "SWARM_OAUTH_DATA_DIR": str(tmp_path)}
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for command in (("show", "orders"), ("remove", "orders"), ("revoke-tokens", "orders")):
            result = run_cli("clients", "--url", url, *command, env=env)
            assert result.returncode != 0, result.stdout
            assert "is the URL the clients API?" in result.stderr, result.stderr
            assert "no client" not in result.stderr
    finally:
        server.shutdown()
        server.server_close()


# -- output for a person and for a program ------------------------------------------------


def test_a_terminal_gets_tables_and_a_pipe_gets_json(token_server):
    env = admin_env(token_server)
    run_cli("clients", "add", "orders", "--scope", "read", "--audience", "inventory", env=env)
    code, screen = run_cli_on_terminal("clients", "list", env=env)
    assert code == 0
    header, rule, row = screen.splitlines()[:3]
    assert header.split() == ["CLIENT", "ID", "SCOPES", "AUDIENCES", "SECRET", "VERSION",
                              "UPDATED", "MANAGED", "BY"]  # fmt: skip
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split()[:4] == ["orders", "read", "inventory", "1"]
    assert ISO.search(row)
    piped = run_cli("clients", "list", env=env)
    assert json.loads(piped.stdout)["clients"][0]["client_id"] == "orders"
    forced = run_cli("clients", "show", "orders", "--output", "table", env=env)
    assert re.search(r"^scopes\s+read$", forced.stdout, re.MULTILINE)
    code, screen = run_cli_on_terminal("clients", "show", "orders", "-o", "json", env=env)
    assert code == 0 and json.loads(screen)["audiences"] == ["inventory"]


def test_keys_list_shows_dates_and_what_comes_next(token_server):
    env = admin_env(token_server)
    (first,) = json.loads(run_cli("keys", "list", env=env).stdout)["keys"]
    rotated = run_cli("keys", "rotate", "--publish-ahead", "300", env=env)
    assert rotated.returncode == 0, rotated.stderr
    new = json.loads(rotated.stdout)
    assert new["state"] == "pending" and ISO.fullmatch(new["activates_at"])
    code, screen = run_cli_on_terminal("keys", "list", env=env)
    assert code == 0
    lines = {line.split()[0]: line for line in screen.splitlines()[2:]}
    assert re.search(r"\bsigning\b.*\bretires in [45]m", lines[first["kid"]])
    assert re.search(r"\bpending\b.*\bsigns in [45]m", lines[new["kid"]])
    listed = json.loads(run_cli("keys", "list", env=env).stdout)["keys"]
    assert {k["kid"]: k["state"] for k in listed} == {
        first["kid"]: "signing",
        new["kid"]: "pending",
    }
    assert all(ISO.fullmatch(k["activates_at"]) for k in listed)
    # The README's compromised-key steps: publish at once, then withdraw the old key.
    assert run_cli("keys", "rotate", "--publish-ahead", "0", env=env).returncode == 0
    code, screen = run_cli_on_terminal("keys", "list", env=env)
    assert re.search(rf"^{re.escape(first['kid'])}\s.*\bretired\b.*leaves the JWKS in \d+m",
                     screen, re.MULTILINE)  # fmt: skip


def test_relative_times_read_as_people_say_them():
    assert [span(s) for s in (0, 45, 270, 299.6, 899, 7500, 262800)] == [
        "0s", "45s", "4m30s", "5m", "14m", "2h5m", "3d1h",
    ]  # fmt: skip
    assert relative(1300, 1000) == "in 5m" and relative(1000, 1090) == "1m30s ago"


# -- swarm-oauth token -------------------------------------------------------------------


@pytest.fixture
def service_identity(token_server, tmp_path):
    """What the registrar gives a managed service: three variables and a secret file."""
    secret = token_server.add_client("orders", scopes=["read", "write"], audiences=["inventory"])
    secret_file = tmp_path / "oauth_client_secret"
    secret_file.write_text(secret["client_secret"])
    return {
        "OAUTH_CLIENT_ID": "orders",
        "OAUTH_TOKEN_URL": f"{token_server.url}/api/token",
        "OAUTH_CLIENT_SECRET_FILE": str(secret_file),
    }


def test_token_with_the_services_variables_prints_a_token_that_verifies(
    token_server, service_identity, tmp_path
):
    result = run_cli("token", env=service_identity, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    access_token = result.stdout.strip()
    keys = jwt.PyJWKClient(f"{token_server.url}/.well-known/jwks.json")
    claims = jwt.decode(
        access_token,
        keys.get_signing_key_from_jwt(access_token).key,
        algorithms=["ES256"],
        audience="inventory",
    )
    assert claims["sub"] == "orders" and claims["scope"] == "read write"


def test_token_claims_for_a_person_and_a_program(service_identity, tmp_path):
    piped = run_cli("token", "--claims", "--scope", "read", env=service_identity)
    assert piped.returncode == 0, piped.stderr
    decoded = json.loads(piped.stdout)
    assert decoded["claims"]["sub"] == "orders" and decoded["claims"]["scope"] == "read"
    assert decoded["header"]["typ"].lower() == "at+jwt"
    code, screen = run_cli_on_terminal("token", "--claims", env=service_identity)
    assert code == 0
    assert re.search(r"^exp\s+\S+Z \(in 1[45]m\d*s?\)$", screen, re.MULTILINE)
    assert re.search(r"^sub\s+orders$", screen, re.MULTILINE)


def test_token_asks_for_what_the_services_scope_variable_says(service_identity):
    # What TokenSource.from_env() asks for in the service, so the answer holds for it.
    result = run_cli("token", "--claims", env={**service_identity, "OAUTH_SCOPE": "write"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["claims"]["scope"] == "write"


def test_token_says_what_is_missing_or_wrong(service_identity, tmp_path):
    none = run_cli("token", env={"OAUTH_CLIENT_ID": "", "OAUTH_TOKEN_URL": ""}, cwd=tmp_path)
    assert none.returncode == 2
    for name in ("OAUTH_CLIENT_ID", "OAUTH_CLIENT_SECRET_FILE", "OAUTH_TOKEN_URL"):
        assert name in none.stderr
    gone = tmp_path / "not-yet"
    started = time.monotonic()
    missing = run_cli("token", env={**service_identity, "OAUTH_CLIENT_SECRET_FILE": str(gone)})
    assert missing.returncode == 1 and str(gone) in missing.stderr
    assert time.monotonic() - started < 20  # no 30 s wait for a file a person asks about
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-secret")
    refused = run_cli("token", env={**service_identity, "OAUTH_CLIENT_SECRET_FILE": str(wrong)})
    assert refused.returncode == 1
    assert "invalid_client" in refused.stderr and "not-the-secret" not in refused.stderr
    audience = run_cli("token", "--audience", "billing", env=service_identity)
    assert audience.returncode == 1 and "invalid_target" in audience.stderr
    assert "Traceback" not in none.stderr + missing.stderr + refused.stderr + audience.stderr


# -- GET /api/clients in pages ---------------------------------------------------------


def test_the_client_list_comes_in_pages(token_server):
    from swarm_oauth.admin_client import AdminClient

    ids = [f"svc-{n:03d}" for n in range(205)]
    with token_server.admin() as admin:
        for client_id in ids:
            assert admin.post("/api/clients/add", json={"client_id": client_id}).status_code == 201
        first = admin.get("/api/clients", params={"limit": 2}).json()
        assert [c["client_id"] for c in first["clients"]] == ids[:2]
        second = admin.get("/api/clients", params={"limit": 2, "cursor": first["next_cursor"]})
        assert [c["client_id"] for c in second.json()["clients"]] == ids[2:4]
        last = admin.get("/api/clients", params={"limit": 5, "cursor": "c3ZjLTE5OQ"}).json()
        assert [c["client_id"] for c in last["clients"]] == ids[200:]
        assert last["next_cursor"] is None
        default = admin.get("/api/clients").json()
        assert len(default["clients"]) == 100 and default["next_cursor"]
        for params, reason in (
            ({"limit": "0"}, "limit must be"),
            ({"limit": "1001"}, "limit must be"),
            ({"limit": "ten"}, "limit must be"),
            ({"limit": "²"}, "limit must be"),  # a digit to str.isdigit, not to int()
            ({"limit": "\u0661"}, "limit must be"),  # Arabic-Indic 1: int() reads it
            ({"limit": "0" * 4400 + "5"}, "limit must be"),  # more digits than int() reads
            ({"cursor": "%%%"}, "cursor is not one"),
            ({"cursor": "IGJhZCBpZA"}, "cursor is not one"),  # " bad id"
        ):
            refused = admin.get("/api/clients", params=params)
            assert refused.status_code == 400 and reason in refused.json()["error_description"]
    with AdminClient(token_server.url, token_server.admin_token) as api:
        assert [c["client_id"] for c in api.list()] == ids  # follows every page
        assert [len(page) for page in api.pages(limit=100)] == [100, 100, 5]
    listed = run_cli("clients", "list", env=admin_env(token_server))
    assert len(json.loads(listed.stdout)["clients"]) == 205
    assert (
        httpx.get(token_server.url + "/openapi.json").json()["paths"]["/api/clients"]["get"][
            "parameters"
        ][0]["name"]
        == "limit"
    )


# -- the troubleshooting guide's recovery from a lost master key -------------------------


def test_a_lost_master_key_is_replaced_by_withdrawing_the_keys_it_opened(server_factory, tmp_path):
    from swarm_oauth.keys import MasterKey

    data = tmp_path / "data"
    server = server_factory(data_dir=data)
    secret = server.add_client("orders")["client_secret"]
    server.stop()
    (data / "master.key").unlink()  # lost
    new_key = tmp_path / "new-master.key"
    new_key.write_text(MasterKey.generate_text())
    env = {"SWARM_OAUTH_DATA_DIR": str(data), "SWARM_OAUTH_MASTER_KEY_FILE": str(new_key)}
    refused = run_cli("serve", "--port", "0", env=env)
    assert refused.returncode == 2 and "does not open with this master key" in refused.stderr
    # The steps of docs/troubleshooting.md: list the keys, withdraw each (no master key
    # is needed for that), start again with the new master key.
    kids = [k["kid"] for k in json.loads(run_cli("keys", "list", env=env).stdout)["keys"]]
    assert kids
    for kid in kids:
        withdrawn = run_cli("keys", "retire", "--force", "--", kid, env=env)
        assert withdrawn.returncode == 0, withdrawn.stderr
    restarted = server_factory(data_dir=data, env={"SWARM_OAUTH_MASTER_KEY_FILE": str(new_key)})
    issued = restarted.token("orders", secret)  # clients and their secrets are untouched
    assert issued.status_code == 200
    assert jwt.get_unverified_header(issued.json()["access_token"])["kid"] not in kids


# -- a worker that cannot start ---------------------------------------------------------

# Loaded by every Python process of the server (PYTHONPATH): in the worker processes
# uvicorn spawns, and only there, opening the store fails as an unreachable database
# makes it fail. The serve command itself opens it first, and succeeds.
WORKER_FAULT = """
import sys
if any("spawn_main" in arg for arg in sys.orig_argv):
    from swarm_oauth.runtime import Runtime
    from swarm_oauth.store import StoreUnavailable

    def refuse(settings):
        raise StoreUnavailable("postgresql: no connection within 2 s: (injected)")

    Runtime.open = refuse
"""


def test_a_worker_that_cannot_start_stops_the_server_with_one_line_saying_why(tmp_path):
    (tmp_path / "fault").mkdir()
    (tmp_path / "fault" / "sitecustomize.py").write_text(WORKER_FAULT)
    env = {"PYTHONPATH": str(tmp_path / "fault"), "SWARM_OAUTH_LOG_FORMAT": "text"}
    args = ("serve", "--port", "0", "--workers", "2", "--data-dir", str(tmp_path / "data"))
    result = run_cli(*args, env=env, cwd=tmp_path, timeout=60)
    # Not started again and again (uvicorn's default), nor ended with status 0.
    assert result.returncode == 2, result.stderr
    output = result.stdout + result.stderr
    assert "error: a worker could not start; the log says why" in result.stderr
    reason = "a worker cannot start: postgresql: no connection within 2 s: (injected)"
    assert 1 <= output.count(reason) <= 2, output
    assert "Traceback" not in output


def test_a_database_file_deleted_under_the_server_stops_writes_and_says_why(token_server):
    assert token_server.admin().post("/api/clients/add", json={"client_id": "kept"}).is_success
    (token_server.data_dir / "swarm-oauth.db").unlink()
    # Written into the deleted file, a client would be answered 201 and gone at restart.
    added = token_server.admin().post("/api/clients/add", json={"client_id": "lost"})
    assert added.status_code == 503, added.text
    deadline = time.monotonic() + 10
    while (ready := httpx.get(token_server.url + "/readyz")).status_code == 200:
        assert time.monotonic() < deadline, "still ready without its database file"
        time.sleep(0.1)
    assert ready.status_code == 503
    lines = [json.loads(line) for line in token_server.log().splitlines() if line.startswith("{")]
    refused = [line for line in lines if line.get("msg") == "the store cannot serve a request"]
    assert refused, "the refused write left no line saying why"
    assert refused[0]["path"] == "/api/clients/add"
    assert "no longer the file this process opened" in refused[0]["error"]


@pytest.mark.parametrize("under", ["", "/sub"])
def test_a_data_dir_that_is_a_file_is_one_line_saying_so(tmp_path, under):
    (tmp_path / "file").write_text("")
    where = f"{tmp_path / 'file'}{under}"
    result = run_cli("serve", "--port", "0", "--data-dir", where, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: data dir {where}: not a directory\n"
