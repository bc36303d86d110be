"""A Python program calls, through ctypes, into C libraries it loads mid-run and that the profiler has never
seen: the first samples in each library wait for its unwind table and are finished in userspace, and they
still carry the whole Python chain (walked in the kernel when each sample was taken) in its place."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
from late_libraries import build_libraries, in_late_library
from test_python_common import (
    SCRIPTS,
    Interpreter,
    Recording,
    Stack,
    assert_share,
    call_lines,
    chain,
    chain_check,
    interpreter_params,
    judge,
    record,
    work_dir,
)

SCRIPT = "late_library.py"
SECONDS_EACH = 0.3
LIBRARIES = 5


def _libraries(tag: str) -> list[Path]:
    return build_libraries(work_dir() / f"late-{tag}", LIBRARIES)


@cache
def _recorded(interp: Interpreter) -> Recording:
    interp.require()
    libs = [str(p) for p in _libraries(interp.name)]
    cmd = [str(interp.executable), str(SCRIPTS / SCRIPT), str(SECONDS_EACH), *libs]
    return record(["--", *cmd], f"late-library-{interp.name}")


@pytest.mark.parametrize("interp", interpreter_params(["3.10.13", "3.11.7", "3.13.0", "debian-3.11"]))
def test_first_samples_in_a_new_library_keep_their_python_frames(interp: Interpreter) -> None:
    """>= 99 % of the samples in the new libraries read <module> > main > outer > middle > inner (at its
    ctypes call) over the interpreter's native root, then ctypes and the library's own frames; some of them
    were deferred (the libraries were new), so the replayed ones are among those judged."""
    run = _recorded(interp)
    names = ["<module>", "main", "outer", "middle", "inner"]
    expected = chain(SCRIPT, names, {call_lines(SCRIPT)["fleetprof_spin"]})
    python_ok = chain_check(interp, expected, SCRIPT)

    def check(stack: Stack) -> str:
        why = python_ok(stack)
        if why:
            return why
        after = [f.name for f in stack.frames[stack.frames.index(stack.python[-1]) + 1 :]]
        if "fleetprof_spin" not in after:
            return "no fleetprof_spin under inner: " + " > ".join(after)
        return ""

    verdict = judge([s for s in run.stacks if in_late_library(list(s.frames))], check)
    assert run.stats.get("deferred_finished", 0) >= 1, run.describe()
    assert_share(verdict, run, at_least=200)
