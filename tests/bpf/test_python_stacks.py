"""`fleetprof record -- python3.X script` on every CPython of the machine: whole Python chains with the
right lines, native frames where the interpreter put them (C calling back into Python), generators and
coroutines under their consumers, and deep recursion."""

from __future__ import annotations

from functools import cache

import pytest
from test_python_common import (
    Check,
    Expected,
    Interpreter,
    Recording,
    Stack,
    assert_share,
    body_lines,
    call_lines,
    chain,
    chain_check,
    interpreter_params,
    judge,
    pyenv,
    python_mismatch,
    record_script,
)


@cache
def _recorded(interp: Interpreter, script: str) -> Recording:
    """One recording per (interpreter, script), shared by the tests that judge it."""
    return record_script(interp, script)


def _in_order(names: list[str], wanted: list[str]) -> bool:
    """`wanted` appear in `names` in this order (not necessarily adjacent)."""
    it = iter(names)
    return all(any(n == w for n in it) for w in wanted)


# ---- <module> -> main -> outer -> middle -> inner -> hot ------------------------------------------------

CHAIN = "chain.py"


@pytest.mark.parametrize("interp", interpreter_params())
def test_chain_is_whole_with_lines(interp: Interpreter) -> None:
    """>= 99 % of the samples in `hot` carry <module> > main > outer > middle > inner > hot, each frame on the
    line of its call, hot on a line of its body; natives between Python frames exactly on <= 3.10."""
    run = _recorded(interp, CHAIN)
    expected = chain(CHAIN, ["<module>", "main", "outer", "middle", "inner", "hot"], body_lines(CHAIN, "hot"))
    verdict = judge(run.of(leaf="hot"), chain_check(interp, expected, CHAIN))
    assert_share(verdict, run, at_least=800)


# ---- C calling back into Python ---------------------------------------------------------------------------

CALLBACK = "callback.py"


def _natives_check(expected: Expected, outer: str, inner: str, natives_ok) -> Check:
    names = [name for name, _ in expected]
    i, j = names.index(outer), names.index(inner)

    def check(stack: Stack) -> str:
        return python_mismatch(stack, expected, CALLBACK) or natives_ok(stack.between(i, j))

    return check


@pytest.mark.parametrize("interp", interpreter_params())
def test_sorted_key_callback_keeps_native_frames_between(interp: Interpreter) -> None:
    """sort_caller > [builtin_sorted … list_sort_impl … in libpython] > pykey, on >= 99 % of pykey samples."""
    run = _recorded(interp, CALLBACK)
    expected = chain(CALLBACK, ["<module>", "main", "sort_caller", "pykey"], body_lines(CALLBACK, "pykey"))

    def natives_ok(between: list) -> str:
        if not between:
            return "no native frames between sort_caller and pykey"
        if any(f.kind != "native" or f.where != interp.module for f in between):
            return "frames between sort_caller and pykey outside " + interp.module
        if interp.symbols and not _in_order([f.name for f in between], ["builtin_sorted", "list_sort_impl"]):
            return "no builtin_sorted > list_sort_impl between sort_caller and pykey"
        return ""

    verdict = judge(run.of(leaf="pykey"), _natives_check(expected, "sort_caller", "pykey", natives_ok))
    assert_share(verdict, run)


@pytest.mark.parametrize("interp", interpreter_params())
def test_json_default_callback_keeps_native_frames_between(interp: Interpreter) -> None:
    """json_caller > dumps > encode > iterencode > [the C encoder in _json…so] > [libpython] > pydefault."""
    run = _recorded(interp, CALLBACK)
    names = ["<module>", "main", "json_caller", "dumps", "encode", "iterencode", "pydefault"]
    expected = chain(CALLBACK, names, body_lines(CALLBACK, "pydefault"))

    def natives_ok(between: list) -> str:
        modules = [f.where for f in between if f.kind == "native"]
        runs = [m for k, m in enumerate(modules) if k == 0 or modules[k - 1] != m]
        encoder = [k for k, m in enumerate(runs) if m.startswith("_json")]
        if len(encoder) != 1 or runs[-1] != interp.module or encoder[0] == len(runs) - 1:
            return "natives between iterencode and pydefault: " + " > ".join(runs)
        if interp.symbols and not _in_order(
            [f.name for f in between], ["encoder_call", "encoder_listencode_obj"]
        ):
            return "no encoder_call > encoder_listencode_obj between iterencode and pydefault"
        return ""

    verdict = judge(run.of(leaf="pydefault"), _natives_check(expected, "iterencode", "pydefault", natives_ok))
    assert_share(verdict, run)


# ---- generators and coroutines --------------------------------------------------------------------------

GEN = "gen_async.py"


@pytest.mark.parametrize("interp", interpreter_params())
def test_generator_frames_sit_under_their_consumer(interp: Interpreter) -> None:
    """consume > squares (> numbers): a running generator's frame is under the frame iterating it."""
    run = _recorded(interp, GEN)
    names = ["<module>", "main", "pipeline", "consume", "squares"]
    for leaf, path in (("squares", names), ("numbers", [*names, "numbers"])):
        expected = chain(GEN, path, body_lines(GEN, leaf))
        verdict = judge(run.of(leaf=leaf), lambda s, e=expected: python_mismatch(s, e, GEN))
        assert_share(verdict, run, at_least=20 if leaf == "numbers" else 300)


@pytest.mark.parametrize("interp", interpreter_params())
def test_coroutine_frames_sit_under_the_event_loop(interp: Interpreter) -> None:
    """run_tasks > asyncio.run … run_until_complete > run_forever > _run_once > _run > [_asyncio task_step]
    > worker > crunch: an awaited coroutine's frames under the task's, under the loop's."""
    run = _recorded(interp, GEN)
    lines = call_lines(GEN)
    head = [("<module>", {lines["main"]}), ("main", {lines["run_tasks"]}), ("run_tasks", {lines["run"]})]
    tail = [("_run", None), ("worker", {lines["crunch"]}), ("crunch", body_lines(GEN, "crunch"))]

    def check(stack: Stack) -> str:
        py = stack.python
        short = [f.short for f in py]
        if len(py) < len(head) + len(tail) + 3:
            return "python frames " + " > ".join(short)
        fake = Stack(stack.pid, stack.tid, stack.thread, stack.process, (*py[:3], *py[-3:]), stack.count)
        why = python_mismatch(fake, [*head, *tail], GEN)
        if why:
            return why
        if not _in_order(short[3:-3], ["run_until_complete", "run_forever", "_run_once"]):
            return "no run_until_complete > run_forever > _run_once: " + " > ".join(short[3:-3])
        between = stack.between(len(py) - 3, len(py) - 2)
        if not any(f.where.startswith("_asyncio") for f in between):
            return "no _asyncio native frame between _run and worker"
        return ""

    assert_share(judge(run.of(leaf="crunch"), check), run)


# ---- deep recursion -------------------------------------------------------------------------------------

RECURSE = "recurse.py"
DEPTH = 200


@pytest.mark.parametrize("interp", [pyenv("3.8.18"), pyenv("3.12.1")], ids=lambda i: i.name)
def test_deep_recursion_is_whole(interp: Interpreter) -> None:
    """200 recursive Python calls: every frame is in the sample (3.8 interleaves ~4 natives per Python
    frame, so ~1000 frames), with no error frame."""
    run = record_script(interp, RECURSE, str(DEPTH))
    lines = call_lines(RECURSE)
    expected = [
        ("<module>", {lines["main"]}),
        ("main", {lines["recurse(from-main)"]}),
        *[("recurse", {lines["recurse"]})] * DEPTH,
        ("recurse", {lines["bottom"]}),
        ("bottom", body_lines(RECURSE, "bottom")),
    ]
    verdict = judge(run.of(leaf="bottom"), lambda s: python_mismatch(s, expected, RECURSE))
    assert_share(verdict, run)
