"""Earlier revisions of the server, run side by side with the checkout: a "before" figure
measured in the same run as the "after" one."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bench.targets import REPO


def source_at(revision: str, workdir: Path) -> Path:
    """The ``src`` directory of ``revision`` (anything ``git`` names: a commit, a branch),
    extracted under ``workdir``, to put first on ``PYTHONPATH``."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    target = workdir / f"src-{commit[:12]}"
    if not (target / "src").is_dir():
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", commit, "src"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(target, filter="data")
    return target / "src"
