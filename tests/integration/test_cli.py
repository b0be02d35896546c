"""The command line: clear errors instead of tracebacks, and the admin commands."""

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from swarm_oauth.keys import MasterKey
from tests.support.cli import run_cli

run = run_cli


def key_list(data_dir):
    """``keys list`` as a program reads it (JSON, since stdout is a pipe)."""
    listed = run("keys", "list", "--data-dir", str(data_dir))
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)["keys"]


def make_store(data_dir):
    """A store as ``serve`` leaves it, without starting one."""
    from swarm_oauth.store import open_store

    data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(None, data_dir)
    store.migrate()
    store.close()


def test_help_lists_the_commands():
    out = run("--help").stdout
    for command in ("serve", "registrar", "keys", "db", "clients"):
        assert command in out


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "cannot read secret file"), ("", "is empty"), ("short", "master key")],
)
def test_unusable_master_key_is_a_clear_error(tmp_path, content, reason):
    key_file = tmp_path / "master.key"
    if content is not None:
        key_file.write_text(content)
    result = run("serve", "--data-dir", str(tmp_path / "d"), "--master-key-file", str(key_file))
    assert result.returncode == 2
    assert reason in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_changed_master_key_is_detected(tmp_path, server_factory):
    server = server_factory(data_dir=tmp_path / "d")
    server.stop()
    (tmp_path / "other.key").write_text("A" * 43 + "=")
    result = run(
        "serve", "--data-dir", str(tmp_path / "d"), "--master-key-file", str(tmp_path / "other.key")
    )
    assert result.returncode == 2
    assert "does not open with this master key" in result.stderr
    assert "Traceback" not in result.stderr


def test_clients_commands_talk_to_the_api(token_server):
    base = ["clients", "--url", token_server.url]
    env = {"SWARM_OAUTH_ADMIN_TOKEN_FILE": str(token_server.data_dir / "admin-token")}
    added = run(*base, "add", "orders", "--scope", "read", "--audience", "inv", env=env)
    assert added.returncode == 0, added.stderr
    secret = json.loads(added.stdout)["client_secret"]
    assert token_server.token("orders", secret).json()["scope"] == "read"
    listed = json.loads(run(*base, "list", env=env).stdout)
    assert [c["client_id"] for c in listed["clients"]] == ["orders"]
    assert run(*base, "add", "orders", env=env).returncode == 1  # 409 → non-zero
    emptied = run(*base, "update", "orders", "--no-scopes", env=env)
    assert emptied.returncode == 0, emptied.stderr
    assert json.loads(emptied.stdout)["scopes"] == []
    assert json.loads(emptied.stdout)["audiences"] == ["inv"]  # not given: unchanged
    both = run(*base, "update", "orders", "--scope", "x", "--no-scopes", env=env)
    assert both.returncode == 2 and "opposite" in both.stderr
    nothing = run(*base, "update", "orders", env=env)
    assert nothing.returncode == 2 and "nothing to update" in nothing.stderr
    revoked = run(*base, "revoke-tokens", "orders", env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert json.loads(revoked.stdout)["client_id"] == "orders"
    assert run(*base, "remove", "orders", env=env).returncode == 0
    assert run(*base, "remove", "orders", env=env).returncode == 1


@pytest.mark.parametrize("client_id", [".", "..", "a.b"])
def test_a_client_id_of_dots_is_shown_as_that_client_not_the_list(token_server, client_id):
    # "." and ".." are client ids, which a URL path would resolve as dot segments.
    base = ["clients", "--url", token_server.url]
    env = {"SWARM_OAUTH_ADMIN_TOKEN_FILE": str(token_server.data_dir / "admin-token")}
    token_server.add_client(client_id, scopes=["read"])
    shown = run(*base, "show", client_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["client_id"] == client_id


def test_a_password_in_a_url_is_not_printed_back(tmp_path):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://someone:pa55w0rd-x@127.0.0.1:{port}"
    for name in ("admin-token", "secret"):
        (tmp_path / name).write_text("t" * 43)
    env = {"SWARM_OAUTH_ADMIN_TOKEN_FILE": str(tmp_path / "admin-token")}
    secret = str(tmp_path / "secret")
    commands = [
        ("clients", "list", "--url", url),
        ("token", "--client-id", "a", "--client-secret-file", secret, "--token-url", url),
        ("registrar", "status", "--url", url),
    ]
    for command in commands:
        done = run(*command, env=env)
        assert done.returncode != 0, command
        assert "127.0.0.1" in done.stderr, done.stderr  # the error names the address
        assert "pa55w0rd" not in done.stderr + done.stdout, command


def test_a_password_in_the_url_of_an_answer_without_json_is_not_printed_back(token_server):
    url = f"http://someone:pa55w0rd-x@127.0.0.1:{token_server.port}/metrics?"  # text/plain
    env = {"SWARM_OAUTH_ADMIN_TOKEN_FILE": str(token_server.data_dir / "admin-token")}
    done = run("registrar", "status", "--url", url, env=env)
    assert done.returncode == 2 and "without JSON" in done.stderr, done.stderr
    assert "pa55w0rd" not in done.stderr


def test_registrar_status_pointed_at_another_server_says_so(token_server):
    # The token server's /healthz answers a GET 200 with JSON of its own, to any query.
    env = {"SWARM_OAUTH_ADMIN_TOKEN_FILE": str(token_server.data_dir / "admin-token")}
    done = run("registrar", "status", "--url", f"{token_server.url}/healthz?", env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "is --url the registrar's HTTP root?" in done.stderr


def test_a_grace_past_30_days_is_refused_before_any_request(tmp_path):
    done = run("clients", "rotate", "orders", "--grace-seconds", "2592001", cwd=tmp_path)
    assert done.returncode == 2
    assert "2592001 is not in the range 0<=x<=2592000" in done.stderr


def test_the_server_says_where_it_listens(token_server):
    # uvicorn no longer does: the socket is bound before it starts.
    assert f'"msg": "listening", "url": "http://127.0.0.1:{token_server.port}"' in (
        token_server.log()
    )


def test_a_default_issuer_on_the_any_address_is_warned_about(server_factory, tmp_path):
    everywhere = server_factory(data_dir=tmp_path / "a", host="0.0.0.0")
    assert "the default issuer names the any-address" in everywhere.log()
    assert f'"issuer": "http://0.0.0.0:{everywhere.port}"' in everywhere.log()
    named = server_factory(
        data_dir=tmp_path / "b", host="0.0.0.0", args=("--issuer", "http://tokens:8080")
    )
    assert "any-address" not in named.log()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_0_serves_on_the_port_the_system_picks_and_the_issuer_names_it(tmp_path, workers):
    args = ["serve", "--port", "0", "--workers", workers, "--data-dir", str(tmp_path / "d")]
    env = {**os.environ, "SWARM_OAUTH_LOG_FORMAT": "json"}
    server = subprocess.Popen(
        [sys.executable, "-m", "swarm_oauth", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    try:
        url = None
        for line in server.stdout:
            if '"msg": "listening"' in line:
                url = json.loads(line)["url"]
                break
        assert url is not None and not url.endswith(":0"), url
        for _ in range(200):
            try:
                metadata = httpx.get(f"{url}/.well-known/oauth-authorization-server", timeout=5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        assert metadata.json()["issuer"] == url
    finally:
        server.terminate()
        server.wait(30)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_is_one_error_line_and_exit_2(tmp_path, workers):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        served = run_cli("serve", "--data-dir", str(tmp_path), "--port", port, "--workers", workers)
        assert served.returncode == 2, served.stderr
        assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in (
            served.stderr.splitlines()
        )


def test_db_upgrade_and_keys_list(tmp_path):
    make_store(tmp_path)
    assert run("db", "upgrade", "--data-dir", str(tmp_path)).returncode == 0
    assert key_list(tmp_path) == []
    assert not (tmp_path / "master.key").exists()  # listing never needs nor makes one


@pytest.mark.parametrize("command", [("db", "upgrade"), ("keys", "list"), ("keys", "retire", "k")])
def test_a_database_url_file_that_cannot_be_read_is_one_error_line(tmp_path, command):
    missing = tmp_path / "no-such-secret"
    done = run(*command, env={"SWARM_OAUTH_DATABASE_URL_FILE": str(missing)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: cannot read secret file {missing}: No such file or directory"
    ]


def test_keys_rotate_never_invents_a_master_key(tmp_path):
    make_store(tmp_path)
    refused = run("keys", "rotate", "--data-dir", str(tmp_path))
    assert refused.returncode == 2 and "no master key" in refused.stderr
    assert not (tmp_path / "master.key").exists()
    (tmp_path / "master.key").write_text(MasterKey.generate_text())
    rotated = run("keys", "rotate", "--data-dir", str(tmp_path), "--alg", "EdDSA")
    assert rotated.returncode == 0, rotated.stderr
    assert [key["alg"] for key in key_list(tmp_path)] == ["EdDSA"]
    other = tmp_path / "other.key"
    other.write_text(MasterKey.generate_text())
    wrong = run("keys", "rotate", "--data-dir", str(tmp_path), "--master-key-file", str(other))
    assert wrong.returncode == 2 and "does not open with this master key" in wrong.stderr
    assert len(key_list(tmp_path)) == 1


def test_keys_rotate_takes_the_algorithm_from_the_same_variable_as_serve(tmp_path):
    make_store(tmp_path)
    (tmp_path / "master.key").write_text(MasterKey.generate_text())
    env = {"SWARM_OAUTH_SIGNING_ALG": "RS256"}
    rotated = run("keys", "rotate", "--data-dir", str(tmp_path), env=env)
    assert rotated.returncode == 0, rotated.stderr
    assert [key["alg"] for key in key_list(tmp_path)] == ["RS256"]
    # The option wins over the variable.
    again = run("keys", "rotate", "--data-dir", str(tmp_path), "--alg", "EdDSA", env=env)
    assert again.returncode == 0, again.stderr
    assert sorted(key["alg"] for key in key_list(tmp_path)) == ["EdDSA", "RS256"]


def test_keys_retire_takes_a_kid_that_starts_with_a_dash_after_double_dash(tmp_path):
    """A kid is a base64url thumbprint, so one in 64 starts with "-"."""
    make_store(tmp_path)
    unread = run("keys", "retire", "--data-dir", str(tmp_path), "-NFPJ4CcR6ooF2kHr")
    assert unread.returncode == 2 and "No such option" in unread.stderr
    read = run("keys", "retire", "--data-dir", str(tmp_path), "--", "-NFPJ4CcR6ooF2kHr")
    assert read.returncode == 2 and "No such option" not in read.stderr
    assert "-NFPJ4CcR6ooF2kHr" in read.stderr  # refused as an unknown key, by name


def test_keys_retire_withdraws_a_key_but_never_the_last(token_server):
    data = str(token_server.data_dir)
    (only,) = key_list(token_server.data_dir)
    refused = run("keys", "retire", "--data-dir", data, "--", only["kid"])
    assert refused.returncode == 2 and "rotate" in refused.stderr
    secret = token_server.add_client("orders")["client_secret"]
    old_token = token_server.token("orders", secret).json()["access_token"]
    assert run("keys", "rotate", "--data-dir", data, "--publish-ahead", "0").returncode == 0
    assert run("keys", "retire", "--data-dir", data, "--", only["kid"]).returncode == 0
    import time

    import httpx
    import jwt

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        kids = [
            k["kid"] for k in httpx.get(token_server.url + "/.well-known/jwks.json").json()["keys"]
        ]
        if only["kid"] not in kids:
            break
        time.sleep(0.05)
    assert only["kid"] not in kids and len(kids) == 1
    new_token = token_server.token("orders", secret).json()["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == kids[0]
    assert jwt.get_unverified_header(old_token)["kid"] not in kids


def rotated_ahead(data: str) -> tuple[dict, dict]:
    """The one key of a server's data dir, and the key ``keys rotate`` then publishes to
    take over from it in 300 s."""
    (old,) = key_list(data)
    assert run("keys", "rotate", "--data-dir", data, "--publish-ahead", "300").returncode == 0
    (new,) = [k for k in key_list(data) if k["kid"] != old["kid"]]
    return old, new


def test_retiring_the_active_key_before_its_successor_signs_is_refused_and_says_how_long(
    token_server,
):
    # The sequence an operator ran for a compromised key, which once left no key signing
    # for five minutes: rotate with a publish-ahead, then retire the old key at once.
    import re

    import jwt

    data = str(token_server.data_dir)
    old, new = rotated_ahead(data)
    refused = run("keys", "retire", "--data-dir", data, "--", old["kid"])
    assert refused.returncode == 2, refused.stdout
    waiting = re.search(rf"key {new['kid']} signs only in (\d+) s", refused.stderr)
    assert waiting is not None, refused.stderr
    assert 250 <= int(waiting.group(1)) <= 300
    assert "--publish-ahead 0" in refused.stderr and "--force" in refused.stderr
    # Nothing was retired: tokens are still issued, signed by the old key.
    assert {k["kid"] for k in key_list(token_server.data_dir)} == {old["kid"], new["kid"]}
    secret = token_server.add_client("orders")["client_secret"]
    answer = token_server.token("orders", secret)
    assert answer.status_code == 200, answer.text
    assert jwt.get_unverified_header(answer.json()["access_token"])["kid"] == old["kid"]


def test_retiring_the_key_a_rotation_hands_over_to_cancels_the_hand_over(token_server):
    # Withdrawing the pending key once left the current one to stop signing at the
    # hand-over, with nothing after it: every token request failed from then on.
    data = str(token_server.data_dir)
    old, new = rotated_ahead(data)
    retired = run("keys", "retire", "--data-dir", data, "--", new["kid"])
    assert retired.returncode == 0, retired.stderr
    assert json.loads(retired.stdout)["keep_signing"] == [old["kid"]]
    (kept,) = key_list(token_server.data_dir)
    assert kept["kid"] == old["kid"]
    assert kept["retires_at"] is None and kept["unpublish_at"] is None
    # The one key left signs on, so retiring it is refused as the last one.
    refused = run("keys", "retire", "--data-dir", data, "--", old["kid"])
    assert refused.returncode == 2 and "no other key will sign" in refused.stderr


def test_without_the_server_extra_the_command_says_what_to_install():
    blocked = "import sys; sys.modules['click'] = None; from swarm_oauth.entry import main; main()"
    result = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True)
    assert result.returncode == 1
    assert "pip install 'swarm-oauth[server]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "command",
    [("status",), ("rotate", "orders"), ("release", "orders"), ("reconcile",)],
    ids=lambda command: command[0],
)
def test_registrar_subcommands_find_the_admin_token_in_the_data_dir(tmp_path, command):
    # As `clients` does: the token serve keeps in DATA_DIR, not always ./data's.
    env = {"SWARM_OAUTH_DATA_DIR": str(tmp_path / "elsewhere")}
    result = run("registrar", *command, "--url", "http://127.0.0.1:9", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert f"{tmp_path / 'elsewhere' / 'admin-token'}:" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("issuer", "reason"),
    [
        ("https://auth.example/", "without the trailing '/' (https://auth.example)"),
        ("https://auth.example/?tenant=1", "no query or fragment"),
        ("https://auth.example#x", "no query or fragment"),
        ("auth.example", "not an http(s) URL with a host"),
    ],
)
def test_an_issuer_verifiers_could_not_match_is_refused_not_rewritten(tmp_path, issuer, reason):
    # Verifiers compare the issuer exactly (RFC 8414 §3.3, RFC 9068 §4): the server once
    # dropped a trailing "/" and served tokens whose iss no longer said what was configured.
    result = run("serve", "--data-dir", str(tmp_path), "--issuer", issuer, "--port", "9")
    assert result.returncode == 2
    assert reason in result.stderr, result.stderr
