"""Start a command stopped right after its exec (ptrace TRACEME), so the profiler knows the new image's
mappings before the first instruction runs; then let it go. Its first samples unwind like all the others."""

from __future__ import annotations

import ctypes
import os
import subprocess
from collections.abc import Callable, Sequence

PTRACE_TRACEME = 0
PTRACE_DETACH = 17

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace  # resolved before any fork: the child only makes the system call
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


def _trace_me() -> None:
    _ptrace(PTRACE_TRACEME, 0, None, None)


def launch_stopped(
    argv: Sequence[str], executable: str, at_exec: Callable[[int], None]
) -> subprocess.Popen[bytes]:
    """Run `argv`; `at_exec(pid)` is called while the new image is stopped at its first instruction.

    Raises OSError like subprocess.Popen when the command can't be executed.
    """
    child = subprocess.Popen(list(argv), executable=executable, preexec_fn=_trace_me)
    try:
        _, status = os.waitpid(child.pid, 0)
    except ChildProcessError:
        return child
    if os.WIFSTOPPED(status):
        try:
            at_exec(child.pid)
        finally:
            _ptrace(PTRACE_DETACH, child.pid, None, None)
    elif os.WIFEXITED(status) or os.WIFSIGNALED(status):
        child.returncode = os.waitstatus_to_exitcode(status)
    return child
