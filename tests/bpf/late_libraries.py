"""Fresh C libraries for tests of code loaded mid-run (no tests here): each has distinct contents, so the
profiler has neither a cached table nor a known inode for it, and exports `int fleetprof_spin(long ms)`,
which spins in its own frames (built without frame pointers) for `ms` milliseconds (and, for Perl, an XSUB
calling it)."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest
from test_python_common import Recording, Stack, assert_share, judge

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
# With `xs=True`: a Perl XSUB too, `fleetprof_spin_xs(ms)`, for Perl to install with DynaLoader.
PERL_XS_C = r"""
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"
XS(fleetprof_spin_xs) {
	dXSARGS;
	if (items != 1) croak("fleetprof_spin_xs(ms)");
	fleetprof_spin((long)SvIV(ST(0)));
	XSRETURN_EMPTY;
}
"""


def build_libraries(out: Path, count: int, xs: bool = False) -> list[Path]:
    """`count` fresh libraries late_<i>.so in `out`, with the Perl XSUB when `xs` (fails the test without a
    C compiler, or without Perl's headers for `xs`)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.fail("no C compiler (make setup installs gcc)")
    out.mkdir(parents=True, exist_ok=True)
    source = out / "late.c"
    source.write_text(LIBRARY_C + (PERL_XS_C if xs else ""), encoding="utf-8")
    flags: list[str] = []
    if xs:
        found = subprocess.run(["perl", "-MExtUtils::Embed", "-e", "ccopts"], capture_output=True, text=True)
        if found.returncode:
            pytest.fail(
                f"Perl's headers are missing (perl -MExtUtils::Embed -e ccopts: {found.stderr.strip()})"
            )
        flags = found.stdout.split()
    paths = []
    for i in range(count):
        path = out / f"late_{i}.so"
        unique = f"{random.getrandbits(30)}UL"
        cmd = [
            cc,
            "-O2",
            "-fomit-frame-pointer",
            "-fPIC",
            "-shared",
            *flags,
            f"-DUNIQUE={unique}",
            "-o",
            str(path),
        ]
        subprocess.run([*cmd, str(source)], check=True, capture_output=True)
        paths.append(path)
    return paths


def in_late_library(frames: list) -> bool:
    """Whether a stack's frames (test_python_common.Frame) run code of one of these libraries."""
    return any(f.kind == "native" and f.where.startswith("late_") for f in frames)


def assert_late_chain(run: Recording, script: Path, expected: list[tuple[str, int]], runtime: str) -> None:
    """The samples in the late libraries read `expected` ((name, line) of `script`'s frames, root first) over
    the native root `_start`, and some of them were deferred (so the replayed ones are among those judged)."""

    def check(stack: Stack) -> str:
        got = [(f.name, f.line) for f in stack.frames if f.where.endswith(script.name)]
        if got != expected:
            return f"{runtime} frames " + " > ".join(f"{n}:{line}" for n, line in got)
        return "" if stack.frames[0].name == "_start" else "native root " + stack.frames[0].name

    assert_share(judge([s for s in run.stacks if in_late_library(list(s.frames))], check), run, at_least=100)
    assert run.stats.get("deferred_finished", 0) >= 1, run.describe()
