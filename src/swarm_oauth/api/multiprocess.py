"""``/metrics`` for a server of several worker processes: one view of them all.

prometheus-client's multiprocess mode keeps each process's values in files in one
directory and sums them (counters, histograms) or combines them (gauges, by each one's
``multiprocess_mode``) at every scrape, whichever worker answers it. The library picks
that mode when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``, so ``serve`` sets
the variable before anything imports it and the workers, started afresh, inherit it.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
_LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db")


def prepare_directory() -> Path:
    """The directory for this server's metric files, empty, and named in ``ENV``.

    An operator's ``PROMETHEUS_MULTIPROC_DIR`` is used (and emptied: files of an earlier
    run would add to this one's counters); otherwise a private temporary one is made.
    """
    configured = os.environ.get(ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix="swarm-oauth-metrics-"))
    os.environ[ENV] = str(directory)
    return directory


def remove_directory(directory: Path) -> None:
    """Delete the directory ``prepare_directory`` made (not an operator's own)."""
    if directory.name.startswith("swarm-oauth-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)


def enabled() -> bool:
    """Whether this process runs in multiprocess mode."""
    return bool(os.environ.get(ENV))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    return True


class LiveWorkersCollector(MultiProcessCollector):
    """``MultiProcessCollector`` that first forgets the live gauges of dead workers, so
    a crashed worker's last ``store_up 0`` does not outlive it."""

    def collect(self) -> Iterable[Metric]:
        for path in glob.glob(os.path.join(self._path, "gauge_live*.db")):
            match = _LIVE_FILE.fullmatch(os.path.basename(path))
            if match and not _alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), self._path)
        return super().collect()


def registry() -> CollectorRegistry:
    """A registry that reads every worker's files at each scrape."""
    combined = CollectorRegistry()
    LiveWorkersCollector(combined)
    return combined
