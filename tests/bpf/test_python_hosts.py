"""`fleetprof record --all` with several Python processes of different versions running at once, all
started before the profiler: each gets its own correct mixed stacks."""

from __future__ import annotations

import subprocess
import time

from test_python_common import (
    DEBIAN,
    DEBIAN_PYTHON,
    SCRIPTS,
    Interpreter,
    assert_share,
    body_lines,
    chain,
    chain_check,
    judge,
    pyenv,
    record,
)

SCRIPT = "chain.py"
RUN_SECONDS = 120.0  # outlives both recordings, even on a loaded machine (the processes are killed after)
CHAIN = ["<module>", "main", "outer", "middle", "inner", "hot"]


def _fleet() -> list[Interpreter]:
    return [pyenv("3.8.18"), DEBIAN if DEBIAN_PYTHON.exists() else pyenv("3.11.7"), pyenv("3.13.0")]


def test_all_shows_every_python_process() -> None:
    """>= 99 % of each process's samples in `hot` carry its whole chain over its own interpreter's native
    frames. A first whole-host run fills the unwind-table cache: samples taken before a process's tables are
    loaded are incomplete (a start-up cost the native tests measure, not what this test is about)."""
    fleet = _fleet()
    for interp in fleet:
        interp.require()
    procs = [subprocess.Popen([str(i.executable), str(SCRIPTS / SCRIPT), str(RUN_SECONDS)]) for i in fleet]
    try:
        time.sleep(0.5)
        record(["--all", "-d", "1"], "all-warm-up")
        run = record(["--all", "-d", "2"], "all")
        alive = [p.poll() is None for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(alive), "the profiled processes ran on undisturbed"
    expected = chain(SCRIPT, CHAIN, body_lines(SCRIPT, "hot"))
    for interp, proc in zip(fleet, procs, strict=True):
        assert_share(judge(run.of(pid=proc.pid, leaf="hot"), chain_check(interp, expected, SCRIPT)), run)
