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


# run_throw's catch block ending: __cxa_end_catch tail-calls (jmp, no frame of its own) libgcc_s's
# _Unwind_DeleteException, so while that runs the true stack has its leaf in libgcc_s and no thrower.
END_OF_CATCH = ["_start", "__libc_start_main", "__libc_start_call_main", "main", "run_throw(int)",
                "_Unwind_DeleteException"]  # fmt: skip


def test_time_in_the_unwinder_is_measured(zoo: Profiler) -> None:
    """The exception activity really samples the unwinder: leaves in libgcc_s, under __cxa_throw. A stack
    rooted in the program with its leaf in libgcc_s is a throw in progress (thrower on the stack) or,
    rarely, the end of a catch block (END_OF_CATCH)."""
    stacks = zoo.stacks("zoo_cxx")
    deep = [s for s in stacks if s.user and s.user[-1].module == "libgcc_s.so.1" and not s.has_error]
    throwing = sum(s.count for s in stacks if any(f.name.startswith("run_throw(") for f in s.user))
    # A throw's time goes mostly to the unwinder: about 80 % of run_throw's samples have a libgcc_s leaf.
    assert sum(s.count for s in deep) >= throwing // 2, f"{sum(s.count for s in deep)} of {throwing}"
    rooted = [[f.name for f in s.user] for s in deep if s.user[0].module == "zoo_cxx"]
    odd = [n for n in rooted if not any(f.startswith("thrower(") for f in n) and n != END_OF_CATCH]
    assert not odd, "\n".join(";".join(n) for n in odd)
    through = [s for s in deep if any(f.name == "__cxa_throw" for f in s.user)]
    assert sum(s.count for s in through) >= sum(s.count for s in deep) // 2


def test_libstdcxx_is_whole(zoo: Profiler) -> None:
    """ostringstream, std::string, std::hash and std::sort of strings: whole with leaves in libstdc++,
    libc and the binary."""
    _check(zoo, "zoo_stdcxx", min_group=60)
