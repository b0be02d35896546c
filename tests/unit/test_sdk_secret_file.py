"""SecretFile: a secret file that appears late and changes under us, read for real."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from swarm_oauth.sdk import SecretFileError
from swarm_oauth.sdk.secret_file import SecretFile


def test_reads_and_strips_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s3cret\n")
    assert SecretFile(path).read() == "s3cret"


def test_missing_file_fails_after_the_bounded_wait_without_leaking(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(SecretFileError, match="absent"):
        SecretFile(path, wait=0.2).read()
    with pytest.raises(SecretFileError):
        asyncio.run(SecretFile(path, wait=0.2).aread())


def test_waiting_is_logged_at_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "absent"
    with caplog.at_level(logging.WARNING, logger="swarm_oauth.sdk"), pytest.raises(SecretFileError):
        # A wait far shorter than the warning interval: the first warning does not wait.
        SecretFile(path, wait=0.3, warn_every=3600).read()
    assert [r.getMessage() for r in caplog.records] == [
        f"client secret file {path} is missing or empty; waited 0s of 0.3s for it"
    ]


def test_waiting_is_logged_again_every_warn_every_seconds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "absent"
    with caplog.at_level(logging.WARNING, logger="swarm_oauth.sdk"), pytest.raises(SecretFileError):
        asyncio.run(SecretFile(path, wait=1, warn_every=0.1).aread())
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) >= 2
    assert all(str(path) in message for message in warnings)


def test_empty_file_counts_as_not_there_yet(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("\n")
    with pytest.raises(SecretFileError, match="missing or empty"):
        SecretFile(path, wait=0).read()


def test_waits_for_the_file_to_appear(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swarm_oauth.sdk")
    path = tmp_path / "late"
    secret = SecretFile(path, wait=30)
    checked = threading.Event()
    original = secret._try_read

    def observed() -> str | None:
        value = original()
        checked.set()
        return value

    secret._try_read = observed  # type: ignore[method-assign]
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(secret.read()))
    reader.start()
    assert checked.wait(10)  # the reader looked and found nothing...
    assert not result
    path.write_text("arrived")  # ...then the secret is mounted
    reader.join(30)
    assert result == ["arrived"]
    assert f"client secret file {path} is missing or empty" in caplog.text
    assert f"client secret file {path} appeared" in caplog.text


def test_async_read_waits_for_the_file_too(tmp_path: Path) -> None:
    path = tmp_path / "late"

    async def main() -> str:
        reading = asyncio.create_task(SecretFile(path, wait=30).aread())
        await asyncio.sleep(0.15)  # let it poll at least once with the file absent
        assert not reading.done()
        path.write_text("arrived")
        return await reading

    assert asyncio.run(main()) == "arrived"


def test_same_length_rewrite_in_place_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("aaaaaaaa")
    secret = SecretFile(path)
    assert secret.read() == "aaaaaaaa"
    with path.open("r+") as handle:  # same inode, same size, maybe the same mtime
        handle.write("bbbbbbbb")
    assert secret.read() == "bbbbbbbb"


def test_replacement_by_rename_is_picked_up(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("old")
    secret = SecretFile(path)
    assert secret.read() == "old"
    staged = tmp_path / "staged"
    staged.write_text("new")
    staged.replace(path)
    assert secret.read() == "new"


def test_unreadable_path_is_an_error_not_a_wait(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError, match="IsADirectoryError"):
        SecretFile(tmp_path, wait=30).read()
