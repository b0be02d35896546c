"""How many CPUs this process may use: what ``--workers auto`` starts one worker per.

``os.sched_getaffinity`` gives the CPUs the process may run on (``docker run
--cpuset-cpus``, ``taskset``). A container limited by a CPU quota instead (``docker run
--cpus``, a swarm service's ``resources.limits.cpus``) still sees every CPU of the host,
so the cgroup's quota caps the count as well, rounded up: 1.5 CPUs make 2 workers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup quota allows (cgroup v2 ``cpu.max``, else v1's
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``); None without a quota."""
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
    except OSError:
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text()
        except OSError:
            return None
    try:
        allowed, per = int(quota), int(period)
    except ValueError:  # "max": no quota
        return None
    return allowed / per if allowed > 0 and per > 0 else None


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may run on, capped by its cgroup's CPU quota; at least 1."""
    cpus = len(os.sched_getaffinity(0))
    limit = cgroup_cpu_limit(root)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)
