"""The zoo in libraries and the kernel: libc (memcpy, qsort calling back), syscalls (kernel frames under a
whole user stack), and a library loaded with dlopen while the program runs."""

from __future__ import annotations

import pytest
from zoo.build import Stack, ZooError
from zoo.programs import CATALOG, Profiler, evaluate

MIN_SHARE = 0.99


def _check(zoo: Profiler, name: str, min_group: int) -> list[Stack]:
    try:
        stacks = zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))
    for what, got in evaluate(CATALOG[name], stacks).items():
        assert got.selected >= min_group, f"{name} {what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{name} {what}: {got.summary()}\n{got.worst()}"
    return stacks


def test_libc_memcpy_and_qsort_callback(zoo: Profiler) -> None:
    """memcpy leaves and qsort's callback (qsort in the middle) are whole in >= 99 %."""
    stacks = _check(zoo, "zoo_libc", min_group=60)
    callback = [s for s in stacks if s.user and s.user[-1].name == "compare_records"]
    assert all(any("qsort" in f.name for f in s.user) for s in callback), "qsort sits between"


def test_syscalls_join_kernel_and_user(zoo: Profiler) -> None:
    """Kernel frames appear leafward of a whole user stack ending in libc's syscall wrappers."""
    stacks = _check(zoo, "zoo_sys", min_group=200)
    mine = [s for s in stacks if s.process == "zoo_sys"]
    in_kernel = [s for s in mine if s.kernel]
    assert sum(s.count for s in in_kernel) >= sum(s.count for s in mine) // 4
    for s in in_kernel:
        kinds = [f.kind for f in s.frames]
        assert "native" not in kinds[kinds.index("kernel") :], s
    got = evaluate(CATALOG["zoo_sys"], in_kernel)["program"]
    assert got.share >= MIN_SHARE, f"kernel samples: {got.summary()}\n{got.worst()}"


def test_dlopen_library_is_whole(zoo: Profiler) -> None:
    """A library loaded 0.3 s after start is unwound and named: run_plugin -> plugin_* in its module."""
    stacks = _check(zoo, "zoo_dl", min_group=300)
    modules = {f.module for s in stacks for f in s.user if f.name.startswith("plugin_")}
    assert modules == {"libzooplugin.so"}
