"""The command line: clear errors instead of tracebacks, and the admin commands."""

import json
import subprocess
import sys

import pytest


def run(*args, env=None, timeout=30):
    import os

    return subprocess.run(
        [sys.executable, "-m", "swarm_oauth", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


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
    assert run(*base, "remove", "orders", env=env).returncode == 0
    assert run(*base, "remove", "orders", env=env).returncode == 1


def test_db_upgrade_and_keys_list(tmp_path):
    assert run("db", "upgrade", "--data-dir", str(tmp_path)).returncode == 0
    rotated = run("keys", "rotate", "--data-dir", str(tmp_path), "--alg", "EdDSA")
    assert rotated.returncode == 0, rotated.stderr
    listed = [
        json.loads(line)
        for line in run("keys", "list", "--data-dir", str(tmp_path)).stdout.splitlines()
    ]
    assert [k["alg"] for k in listed] == ["EdDSA"]
