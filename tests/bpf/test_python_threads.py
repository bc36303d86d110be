"""Thread names of Python threads in profiles: CPython <= 3.13 leaves the OS thread name (comm) alone, so
fleetprof reads `threading.Thread.name` from the target's memory; an OS name the application set wins."""

from __future__ import annotations

import json

import pytest
from test_python_common import Interpreter, Stack, assert_share, interpreter_params, judge, record_script

SCRIPT = "threads.py"
# the function each thread spins in (under burn) -> the label its samples must carry
EXPECTED = {
    "main_spin": "MainThread",
    "worker_spin": "worker",
    "unicode_spin": "w\u00f6rker-\u00fc",
    "renamed_spin": "os-side",  # prctl(PR_SET_NAME) before spinning: the OS name wins over "py-side"
}
PYTHON_NAME = {"renamed_spin": "py-side"}


def _spinning_in(stack: Stack) -> str:
    """The *_spin function whose burn loop the stack is in, "" when none."""
    names = [f.short for f in stack.python]
    if len(names) >= 2 and names[-1] == "burn" and names[-2] in EXPECTED:
        return names[-2]
    return ""


@pytest.mark.parametrize("interp", interpreter_params())
def test_samples_carry_their_threads_name(interp: Interpreter) -> None:
    """>= 99 % of each thread's samples carry its Python thread name (or the OS name it set), and the
    thread with that name is the one whose native id the script printed."""
    run = record_script(interp, SCRIPT)
    native_ids = json.loads(run.stdout.splitlines()[0])
    for function, label in EXPECTED.items():
        stacks = [s for s in run.stacks if _spinning_in(s) == function]
        tid = native_ids[PYTHON_NAME.get(function, label)]
        verdict = judge(
            stacks,
            lambda s, want=label, tid=tid: (
                "" if s.thread == want and s.tid == tid else f"thread {s.thread!r} tid {s.tid}"
            ),
        )
        assert_share(verdict, run, at_least=100)
