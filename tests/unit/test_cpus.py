"""How many workers ``--workers auto`` starts: the CPUs the process may run on, capped by
a cgroup CPU quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``)."""

from __future__ import annotations

import os

import click
import pytest

from swarm_oauth.cli.serve import MAX_WORKERS, worker_count
from swarm_oauth.cpus import cgroup_cpu_limit, usable_cpus


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("max 100000\n", None), ("150000 100000\n", 1.5), ("50000 100000\n", 0.5)],
)
def test_cgroup_v2_quota(tmp_path, cpu_max, limit):
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert cgroup_cpu_limit(tmp_path) == limit


def test_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_no_cgroup_files_means_no_quota(tmp_path):
    assert cgroup_cpu_limit(tmp_path) is None
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_a_quota_caps_the_cpus_rounding_up(tmp_path):
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu.max").write_text(f"{100000 * 64 + 1} 100000\n")
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_workers_option():
    command = click.Command("serve")
    param = click.Option(["--workers"])
    ctx = click.Context(command)
    assert worker_count(ctx, param, "3") == 3
    assert worker_count(ctx, param, "auto") == min(usable_cpus(), MAX_WORKERS)
    assert worker_count(ctx, param, "AUTO") == worker_count(ctx, param, "auto")
    for bad in ("0", "65", "two", ""):
        with pytest.raises(click.BadParameter):
            worker_count(ctx, param, bad)
