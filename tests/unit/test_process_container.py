"""Container ids from /proc/PID/cgroup in the formats of docker, containerd, cri-o, podman, kubepods."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetprof.process.container import container_id_from_cgroup

CGROUPS = Path(__file__).resolve().parents[1] / "fixtures" / "process" / "cgroup"
ID = "3f1a9c0e5b7d24f8a6c1e0b9d8f7a6c5b4e3d2c1f0a9b8c7d6e5f4a3b2c1d0e9"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("docker_v1.txt", ID),
        ("docker_v2.txt", ID),
        ("containerd_kubepods_v2.txt", ID),
        ("kubepods_cgroupfs_v1.txt", ID),
        ("crio_v2.txt", ID),
        ("podman_rootless_v2.txt", ID),
        ("docker_in_docker_v2.txt", ID),
        ("hybrid.txt", ID),
        ("crio_conmon_v2.txt", ""),
        ("podman_conmon_v2.txt", ""),
        ("host_v2.txt", ""),
        ("sandbox_32hex.txt", ""),
    ],
)
def test_container_id(fixture, expected):
    assert container_id_from_cgroup((CGROUPS / fixture).read_text()) == expected


def test_garbage_and_empty_input():
    assert container_id_from_cgroup("") == ""
    assert container_id_from_cgroup("not a cgroup file\n:::\n") == ""
    assert container_id_from_cgroup(f"0::/docker-{ID.upper()}.scope") == ""
