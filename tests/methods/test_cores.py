"""`usable_cores`: CPU affinity, capped by the cgroup's CPU quota (v2 `cpu.max`, v1 CFS quota), read from
a cgroup tree laid out as the kernel does."""

import os

import pytest

from peppp.methods._base import cgroup_cpus, usable_cores


def tree(tmp_path, files: dict[str, str], proc: str):
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = tmp_path / "cgroup"
    for path, text in files.items():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (tmp_path / "proc").write_text(proc)
    return dict(cgroup_root=str(root), proc_cgroup=str(tmp_path / "proc"))


def affinity() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@pytest.mark.parametrize("files, proc, cpus", [
    ({"cpu.max": "200000 100000\n"}, "0::/\n", 2.0),  # a container's own namespace
    ({"cpu.max": "max 100000\n"}, "0::/\n", None),
    ({"kubepods/pod1/cpu.max": "150000 100000\n", "kubepods/cpu.max": "400000 100000\n"}, "0::/kubepods/pod1\n", 1.5),
    ({"kubepods/pod1/cpu.max": "max 100000\n", "kubepods/cpu.max": "50000 100000\n"}, "0::/kubepods/pod1\n", 0.5),
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n0::/\n", 3.0),
    ({"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n"},
     "4:cpu,cpuacct:/docker/abc\n", 1.0),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "1:cpu:/\n", None),
    ({"cpu.max": "garbage\n"}, "0::/\n", None),
    ({}, "", None),  # no cgroup files at all (not Linux, or not mounted)
])
def test_cgroup_cpus_reads_the_quota_of_the_process_cgroup_and_its_parents(tmp_path, files, proc, cpus):
    assert cgroup_cpus(**tree(tmp_path, files, proc)) == cpus


def test_usable_cores_is_the_affinity_capped_by_the_quota_rounded_up(tmp_path):
    cores = affinity()
    assert usable_cores(**tree(tmp_path / "none", {}, "")) == cores
    assert usable_cores(**tree(tmp_path / "half", {"cpu.max": "50000 100000"}, "0::/\n")) == 1
    assert usable_cores(**tree(tmp_path / "one.5", {"cpu.max": "150000 100000"}, "0::/\n")) == min(cores, 2)
    assert usable_cores(**tree(tmp_path / "many", {"cpu.max": f"{100000 * (cores + 8)} 100000"}, "0::/\n")) == cores


def test_a_missing_proc_file_still_reads_the_root_cgroup(tmp_path):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cpu.max").write_text("100000 100000")
    assert cgroup_cpus(cgroup_root=str(root), proc_cgroup=str(tmp_path / "absent")) == 1.0
