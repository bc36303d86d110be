"""A Python program calls, through ctypes, into C libraries it loads mid-run and that the profiler has never
seen: the first samples in each library wait for its unwind table and are finished in userspace, and they
still carry the whole Python chain (walked in the kernel when each sample was taken) in its place."""

from __future__ import annotations

import random
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
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

LIBRARY_C = r"""
#include <time.h>
static const char pad[2 << 20] __attribute__((used)) = {UNIQUE & 0x7f}; /* past the in-agent lane's size */
__attribute__((noinline)) static unsigned long work(unsigned long n) {
	unsigned long acc = UNIQUE;
	for (unsigned long i = 0; i < n; i++) acc = acc * 6364136223846793005UL + i;
	return acc;
}
__attribute__((noinline)) static unsigned long loop(long ms) {
	struct timespec t0, t;
	unsigned long acc = 0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		acc += work(20000);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
	return acc;
}
int fleetprof_spin(long ms) { return (int)loop(ms); }
"""


def _libraries(tag: str) -> list[Path]:
    """Fresh libraries (distinct contents, so no cached table and no known inode), built without frame
    pointers."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler (apt-get install gcc)")
    out = work_dir() / f"late-{tag}"
    out.mkdir(exist_ok=True)
    source = out / "late.c"
    source.write_text(LIBRARY_C, encoding="utf-8")
    paths = []
    for i in range(LIBRARIES):
        path = out / f"late_{i}.so"
        unique = f"{random.getrandbits(30)}UL"
        cmd = [cc, "-O2", "-fomit-frame-pointer", "-fPIC", "-shared", f"-DUNIQUE={unique}", "-o", str(path)]
        subprocess.run([*cmd, str(source)], check=True, capture_output=True)
        paths.append(path)
    return paths


@cache
def _recorded(interp: Interpreter) -> Recording:
    interp.require()
    libs = [str(p) for p in _libraries(interp.name)]
    cmd = [str(interp.executable), str(SCRIPTS / SCRIPT), str(SECONDS_EACH), *libs]
    return record(["--", *cmd], f"late-library-{interp.name}")


def _in_late_library(stack: Stack) -> bool:
    return any(f.kind == "native" and f.where.startswith("late_") for f in stack.frames)


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

    verdict = judge([s for s in run.stacks if _in_late_library(s)], check)
    assert run.stats.get("deferred_finished", 0) >= 1, run.describe()
    assert_share(verdict, run, at_least=200)
