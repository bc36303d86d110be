"""Bad input degrades one stack, never the target or the profiler: a frame chain that points at unreadable
memory, loops, or holds something that is not a code object (the target corrupts its own frames for a
while, then repairs them), and a CPython version fleetprof does not support."""

from __future__ import annotations

import pytest
from test_python_common import (
    PYENV_ROOT,
    Interpreter,
    Stack,
    assert_share,
    body_lines,
    chain,
    judge,
    pyenv,
    python_mismatch,
    record_script,
)

from fleetprof.interpreters.python.discovery import inspect_python_binary

CORRUPT = "corrupt.py"
WALKER_ERROR = "[unwind: python walker]"


def _offsets(interp: Interpreter) -> list[str]:
    """corrupt.py's argv after the duration: frame-object flag, previous and code offsets of frames."""
    interp.require()
    library = PYENV_ROOT / interp.name / "lib" / f"libpython3.{interp.minor}.so.1.0"
    binary = inspect_python_binary(library)
    assert binary is not None
    lay = binary.layout
    return ["1" if interp.minor <= 10 else "0", str(lay.frame_previous), str(lay.frame_code)]


def _phase(stack: Stack) -> str:
    """The phase function of corrupt.py the stack spins under, "" when none."""
    names = [f.short for f in stack.python]
    if names[-1:] != ["spin"]:
        return ""
    return next((n for n in names if n.startswith("corrupt_") or n == "healthy"), "")


def _stopped_with(error: str | None, phase: str):
    """A check: the stack starts with an error frame (`error`, or any with None) right under the process,
    and still has the phase's own frames down to spin."""

    def check(stack: Stack) -> str:
        first = stack.frames[0]
        if first.kind != "error" or (error is not None and first.name != error):
            return f"starts with {first}"
        tail = [f.short for f in stack.python[-3:]]
        return "" if tail == [phase, "corrupted", "spin"] else "python frames end " + " > ".join(tail)

    return check


@pytest.mark.parametrize(
    "interp", [pyenv("3.8.18"), pyenv("3.11.7"), pyenv("3.12.1"), pyenv("3.13.0")], ids=lambda i: i.name
)
def test_corrupt_frame_chains_end_in_an_error_frame(interp: Interpreter) -> None:
    """While main's frame points at an unmapped page, at itself, or at a non-code object, >= 99 % of the
    samples keep the frames above it and say `[unwind: python walker]`; a two-frame cycle ends bounded
    (3.11+: in an error frame); once repaired, stacks are whole again; the target exits 0."""
    run = record_script(interp, CORRUPT, *_offsets(interp))
    by_phase: dict[str, list[Stack]] = {}
    for stack in run.stacks:
        by_phase.setdefault(_phase(stack), []).append(stack)

    for phase in ("corrupt_unreadable", "corrupt_self_cycle", "corrupt_code"):
        verdict = judge(by_phase.get(phase, []), _stopped_with(WALKER_ERROR, phase), allow_errors=True)
        assert_share(verdict, run, at_least=150)
    two_cycle = by_phase.get("corrupt_two_cycle", [])
    if interp.minor >= 11:
        verdict = judge(two_cycle, _stopped_with(None, "corrupt_two_cycle"), allow_errors=True)
    else:  # one Python frame per eval-loop call: the walk is bounded by the C stack, a cycle goes unnoticed
        verdict = judge(
            two_cycle, lambda s: "" if s.python[-2].short == "corrupted" else "no corrupted frame"
        )
    assert_share(verdict, run, at_least=150)

    expected = chain(CORRUPT, ["<module>", "main", "healthy", "spin"], body_lines(CORRUPT, "spin"))
    healthy = judge(by_phase.get("healthy", []), lambda s: python_mismatch(s, expected, CORRUPT))
    assert_share(healthy, run, at_least=150)
    assert run.stats.get("python_error: unreadable", 0) > 0
    assert run.stats.get("python_error: bad code object", 0) > 0


# ---- an unsupported CPython -------------------------------------------------------------------------------

OLD = Interpreter("3.7.16", PYENV_ROOT / "3.7.16" / "bin" / "python3.7", 7, "libpython3.7m.so.1.0", True)


def _old_run():
    if not OLD.executable.exists():
        pytest.skip(f"{OLD.executable} is not installed (an interpreter older than fleetprof supports)")
    return record_script(OLD, "chain.py")


def _through_eval_loop(stack: Stack) -> bool:
    return any(f.name == "_PyEval_EvalFrameDefault" and f.where == OLD.module for f in stack.frames)


def test_unsupported_python_keeps_its_native_stacks() -> None:
    """CPython 3.7 is not walked, but profiling it works: >= 99 % of its samples are whole native stacks
    from _start through the eval loop, with no Python frames made up."""
    run = _old_run()
    in_eval = [s for s in run.stacks if _through_eval_loop(s)]

    def check(stack: Stack) -> str:
        if stack.python:
            return "python frames in an unsupported interpreter"
        natives = [f for f in stack.frames if f.kind == "native"]
        return "" if natives and natives[0].name == "_start" else "the native root is not _start"

    assert_share(judge(in_eval, check, allow_errors=True), run)


def test_unsupported_python_is_marked_with_an_error_frame() -> None:
    """Per the contract for bad input, a stack whose Python frames cannot be walked says so: every sample
    through the eval loop of CPython 3.7 carries an error frame naming Python."""
    run = _old_run()
    in_eval = [s for s in run.stacks if _through_eval_loop(s)]

    def check(stack: Stack) -> str:
        errors = [f.name for f in stack.frames if f.kind == "error"]
        return "" if any("python" in e.lower() for e in errors) else "no error frame about Python"

    assert_share(judge(in_eval, check, allow_errors=True), run)
