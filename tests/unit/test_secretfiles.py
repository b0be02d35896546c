import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from swarm_oauth.admin_token import resolve_admin_token
from swarm_oauth.secretfiles import (
    MAX_SECRET_FILE_BYTES,
    SecretConfigError,
    create_once,
    read_secret_file,
    secret_from_env,
)


def _race(path, content, results):
    results.put((content, create_once(path, content)))


def test_create_once_from_many_processes_writes_exactly_one(tmp_path):
    path = tmp_path / "admin-token"
    results = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_race, args=(path, f"value-{i}", results)) for i in range(8)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    outcomes = [results.get() for _ in procs]
    winners = [content for content, won in outcomes if won]
    assert len(winners) == 1
    assert read_secret_file(path) == winners[0]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["admin-token"]  # no temporary left


def test_secret_from_env_prefers_the_value_then_the_file(tmp_path):
    file = tmp_path / "secret"
    file.write_text("from-file\n")
    assert secret_from_env("X", {"X_FILE": str(file)}) == "from-file"
    assert secret_from_env("X", {"X": "direct", "X_FILE": str(file)}) == "direct"
    assert secret_from_env("X", {}) is None


def test_missing_or_empty_file_names_the_file_not_a_value(tmp_path):
    with pytest.raises(SecretConfigError, match="cannot read"):
        read_secret_file(tmp_path / "nope")
    (tmp_path / "empty").write_text("  \n")
    with pytest.raises(SecretConfigError, match="empty"):
        read_secret_file(tmp_path / "empty")


def test_a_file_that_is_not_text_names_the_file_not_a_value(tmp_path):
    raw = tmp_path / "raw-key"
    raw.write_bytes(b"\xff\xfe" + bytes(range(30)))  # 32 random bytes, say
    with pytest.raises(SecretConfigError, match="raw-key is not UTF-8 text"):
        read_secret_file(raw)


@pytest.mark.parametrize("token", ["t\u00f6ken", "tab\there", "bell\x07"])
def test_an_admin_token_must_be_printable_ascii(tmp_path, token):
    # It travels in an Authorization header; httpx could not send it.
    (tmp_path / "admin-token").write_text(token)
    with pytest.raises(SecretConfigError, match="printable ASCII") as raised:
        resolve_admin_token(tmp_path / "admin-token")
    assert token not in str(raised.value)


def test_an_admin_token_with_a_space_inside_still_works(tmp_path):
    # It did before the check: clients send it, and the server reads past the first space.
    (tmp_path / "admin-token").write_text("two words\n")
    assert resolve_admin_token(tmp_path / "admin-token") == "two words"


def test_a_secret_file_past_64_kib_is_refused_without_being_read_whole(tmp_path: Path) -> None:
    at_limit, past = tmp_path / "at-limit", tmp_path / "past"
    at_limit.write_text("s" * MAX_SECRET_FILE_BYTES)
    past.write_text("s" * (MAX_SECRET_FILE_BYTES + 1))
    assert read_secret_file(at_limit) == "s" * MAX_SECRET_FILE_BYTES
    with pytest.raises(SecretConfigError, match="larger than 64 KiB") as caught:
        read_secret_file(past)
    assert "sss" not in str(caught.value)
    # What a wrong path may name: an endless file is refused as quickly.
    with pytest.raises(SecretConfigError, match="larger than 64 KiB"):
        read_secret_file("/dev/zero")
