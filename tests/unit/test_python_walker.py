"""The reference walker against real interpreters: every thread's stack, names and lines, and where the
BPF walker must hand back to native unwinding."""

from __future__ import annotations

import ctypes
import subprocess
import threading
from pathlib import Path

import pytest
from test_python_support import CHAIN, Interpreter, chain_lines, interpreter_params, parked_chain

from fleetprof.interpreters.python.process import find_python, proc_info
from fleetprof.interpreters.python.procinfo import PY_WALK_FRAMEOBJECT
from fleetprof.interpreters.python.walker import ThreadStack, walk_thread_stacks
from fleetprof.profile.model import FrameKind

LINES = chain_lines()


def _by_name(stacks: list[ThreadStack], threads: dict[str, int]) -> dict[str, ThreadStack]:
    by_ident = {s.thread_id: s for s in stacks}
    assert set(threads.values()) <= set(by_ident), "every Python thread has a thread state"
    return {name: by_ident[ident] for name, ident in threads.items()}


def _chain(stack: ThreadStack) -> list[tuple[str, int]]:
    """(function, line) of the frames of chain.py, innermost first."""
    return [(f.function, f.line) for f in stack.frames if f.file.endswith("chain.py")]


def _name(minor: int, qualname: str) -> str:
    return qualname if minor >= 11 else qualname.rsplit(".", 1)[-1]


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_walker_returns_every_threads_stack(interpreter: Interpreter) -> None:
    with parked_chain(interpreter) as child:
        stacks = _by_name(walk_thread_stacks(child.pid), child.threads)
    for stack in stacks.values():
        assert stack.error == ""
        assert all(f.kind is FrameKind.PYTHON and f.file and f.line > 0 for f in stack.frames)
    park = ("park", LINES["park"])
    assert _chain(stacks["MainThread"]) == [
        park,
        ("hot", LINES["hot"]),
        ("inner", LINES["inner"]),
        ("middle", LINES["middle"]),
        ("outer", LINES["outer"]),
        ("main", LINES["main"]),
        ("<module>", LINES["module"]),
    ]
    assert _chain(stacks["worker"]) == [park, ("worker_loop", LINES["worker_loop"])]
    assert _chain(stacks["generator"]) == [
        park,
        ("producer", LINES["producer"]),
        ("consumer", LINES["consumer"]),
    ]
    assert _chain(stacks["coroutine"]) == [
        park,
        ("coro_leaf", LINES["coro_leaf"]),
        ("coro_main", LINES["coro_main"]),
        ("run_coroutine", LINES["run_coroutine"]),
    ]
    assert _chain(stacks["unicode"]) == [
        park,
        (_name(interpreter.minor, "Ünïcode.méthode"), LINES["méthode"]),
    ]
    assert _chain(stacks["callback"]) == [
        park,
        ("sort_key", LINES["sort_key"]),
        ("sort_with_callback", LINES["sort_with_callback"]),
    ]
    assert _chain(stacks["recursive"]) == [
        park,
        ("recurse", LINES["recurse_bottom"]),
        *[("recurse", LINES["recurse"])] * 200,
    ]
    exec_frames = [(f.function, f.line) for f in stacks["exec"].frames[:2]]
    assert exec_frames == [park, ("exec_fn", 2)]
    assert stacks["exec"].frames[1].file == "<exec-string>"
    for name in ("worker", "generator", "coroutine", "unicode", "exec", "callback", "recursive"):
        bottom = stacks[name].frames[-1]
        assert bottom.function == _name(interpreter.minor, "Thread._bootstrap")
        assert bottom.file.endswith("threading.py")
    leaf = stacks["MainThread"].frames[0]
    assert leaf.start_line == LINES["def_park"]
    assert leaf.file == str(CHAIN) or interpreter.minor < 9  # 3.8 keeps __main__'s path as given


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_eval_call_boundaries_match_the_version(interpreter: Interpreter) -> None:
    """Where native frames go between Python frames: after every frame on <=3.10, at entry frames after."""
    with parked_chain(interpreter) as child:
        stacks = _by_name(walk_thread_stacks(child.pid), child.threads)
        process = find_python(child.pid)
    assert process is not None
    ends = {
        name: [
            (f.function.rsplit(".", 1)[-1], raw.ends_eval_call)
            for f, raw in zip(s.frames, s.raw, strict=True)
        ]
        for name, s in stacks.items()
    }
    if proc_info(process.binary, process.bias).walk_kind == PY_WALK_FRAMEOBJECT:
        assert all(end for stack in ends.values() for _, end in stack)
        return
    # Python-to-Python calls share one eval-loop call; C (PyEval_EvalCode, sorted, a generator's send,
    # a thread's start) enters a new one.
    assert ends["MainThread"] == [(name, name == "<module>") for name, _ in ends["MainThread"]]
    assert ends["callback"][:2] == [("park", False), ("sort_key", True)]
    assert ends["generator"][:2] == [("park", False), ("producer", True)]
    assert ends["worker"][-1] == ("_bootstrap", True)


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_thread_ids_are_pthread_and_kernel_ids(interpreter: Interpreter) -> None:
    with parked_chain(interpreter) as child:
        stacks = walk_thread_stacks(child.pid)
        tasks = {int(p.name) for p in Path(f"/proc/{child.pid}/task").iterdir()}
    assert {s.thread_id for s in stacks} == set(child.threads.values())
    natives = {s.native_thread_id for s in stacks}
    if interpreter.minor >= 11:
        assert natives <= tasks
        assert child.pid in natives
    else:
        assert natives == {None}


def test_no_python_in_a_process_gives_no_stacks() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert walk_thread_stacks(sleeper.pid) == []
    finally:
        sleeper.kill()
        sleeper.wait()
    assert walk_thread_stacks(sleeper.pid) == []


def _fsbase() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    value = ctypes.c_ulong()
    assert libc.syscall(158, 0x1003, ctypes.byref(value)) == 0  # arch_prctl(ARCH_GET_FS)
    return value.value


def test_pthread_self_is_the_thread_pointer() -> None:
    """What the BPF relies on to match thread states: tstate->thread_id (pthread_self) == task fsbase."""
    seen = []
    worker = threading.Thread(target=lambda: seen.append((threading.get_ident(), _fsbase())))
    worker.start()
    worker.join()
    assert seen[0][0] == seen[0][1]
    assert threading.get_ident() == _fsbase()
