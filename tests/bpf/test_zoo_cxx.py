"""The C++ zoo without frame pointers: templates, a lambda passed to std::sort, virtual calls, exceptions
(time spent throwing and unwinding in libgcc_s/libstdc++), and time in libstdc++ itself."""

from __future__ import annotations

import pytest
from zoo.build import ZooError
from zoo.programs import CATALOG, Profiler, evaluate

MIN_SHARE = 0.99


def _check(zoo: Profiler, name: str, min_group: int) -> None:
    try:
        stacks = zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))
    for what, got in evaluate(CATALOG[name], stacks).items():
        assert got.selected >= min_group, f"{name} {what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{name} {what}: {got.summary()}\n{got.worst()}"


def test_cxx_activities_are_whole(zoo: Profiler) -> None:
    """Each activity (sort with a lambda, templates, virtual calls, exceptions) is whole in >= 99 %."""
    _check(zoo, "zoo_cxx", min_group=60)


def test_time_in_the_unwinder_is_measured(zoo: Profiler) -> None:
    """The exception activity really samples the unwinder: leaves in libgcc_s, under __cxa_throw."""
    stacks = zoo.stacks("zoo_cxx")
    deep = [s for s in stacks if s.user and s.user[-1].module == "libgcc_s.so.1" and not s.has_error]
    assert sum(s.count for s in deep) >= 30
    assert all(
        any(f.name.startswith("thrower(") for f in s.user) for s in deep if s.user[0].module == "zoo_cxx"
    )
    through = [s for s in deep if any(f.name == "__cxa_throw" for f in s.user)]
    assert sum(s.count for s in through) >= sum(s.count for s in deep) // 2


def test_libstdcxx_is_whole(zoo: Profiler) -> None:
    """ostringstream, std::string, std::hash and std::sort of strings: whole with leaves in libstdc++,
    libc and the binary."""
    _check(zoo, "zoo_stdcxx", min_group=60)
