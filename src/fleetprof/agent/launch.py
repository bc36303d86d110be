"""Start a command stopped, so the profiler knows its mappings before its own code runs.

The child asks to be traced (PTRACE_TRACEME) and stops right after exec. To also see the libraries the
dynamic loader maps, a breakpoint goes on the program's entry point (AT_ENTRY from the auxiliary vector):
when it hits, every DT_NEEDED library is mapped and no code of the program has run. The callback scans the
process there; then the original instruction is restored and the child detached. If any step fails, the
child is simply detached where it is.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
from collections.abc import Callable, Sequence

PTRACE_TRACEME = 0
PTRACE_PEEKTEXT = 1
PTRACE_POKETEXT = 4
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_DETACH = 17
AT_ENTRY = 9
INT3 = 0xCC
_RIP = 16  # index of rip in struct user_regs_struct (x86-64)
_NREGS = 27

_libc = ctypes.CDLL(None, use_errno=True)
_ptrace = _libc.ptrace  # resolved before any fork: the child only makes the system call
_ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
_ptrace.restype = ctypes.c_long


class _Exited(Exception):
    """The child ended before reaching its entry point (its status was reaped here)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _trace_me() -> None:
    _ptrace(PTRACE_TRACEME, 0, None, None)


def _entry_point(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/auxv", "rb") as f:
            data = f.read()
    except OSError:
        return None
    for key, value in struct.iter_unpack("<QQ", data[: len(data) - len(data) % 16]):
        if key == AT_ENTRY:
            return value
    return None


def _peek(pid: int, addr: int) -> int | None:
    ctypes.set_errno(0)
    word = _ptrace(PTRACE_PEEKTEXT, pid, ctypes.c_void_p(addr), None)
    if word == -1 and ctypes.get_errno():
        return None
    return word & 0xFFFFFFFFFFFFFFFF


def _poke(pid: int, addr: int, word: int) -> bool:
    signed = word - (1 << 64) if word >= 1 << 63 else word
    return _ptrace(PTRACE_POKETEXT, pid, ctypes.c_void_p(addr), ctypes.c_void_p(signed)) == 0


def _run_to_entry(pid: int) -> bool:
    """Continue a child stopped at exec until its entry point; False when that could not be done cleanly."""
    entry = _entry_point(pid)
    word = _peek(pid, entry) if entry else None
    if entry is None or word is None:
        return False
    if not _poke(pid, entry, (word & ~0xFF) | INT3):
        return False
    if _ptrace(PTRACE_CONT, pid, None, None) != 0:
        _poke(pid, entry, word)
        return False
    _, status = os.waitpid(pid, 0)
    if not os.WIFSTOPPED(status):
        raise _Exited(os.waitstatus_to_exitcode(status))
    regs = (ctypes.c_ulonglong * _NREGS)()
    ok = _poke(pid, entry, word) and _ptrace(PTRACE_GETREGS, pid, None, regs) == 0
    if ok and regs[_RIP] == entry + 1:
        regs[_RIP] = entry
        ok = _ptrace(PTRACE_SETREGS, pid, None, regs) == 0
    return ok


def launch_stopped(
    argv: Sequence[str], executable: str, at_start: Callable[[int], None]
) -> subprocess.Popen[bytes]:
    """Run `argv`; `at_start(pid)` is called while the new image is stopped before its own code runs.

    Raises OSError like subprocess.Popen when the command can't be executed.
    """
    child = subprocess.Popen(list(argv), executable=executable, preexec_fn=_trace_me)
    try:
        _, status = os.waitpid(child.pid, 0)
    except ChildProcessError:
        return child
    if not os.WIFSTOPPED(status):
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            child.returncode = os.waitstatus_to_exitcode(status)
        return child
    try:
        _run_to_entry(child.pid)
    except _Exited as exc:
        child.returncode = exc.code
        return child
    try:
        at_start(child.pid)
    finally:
        _ptrace(PTRACE_DETACH, child.pid, None, None)
    return child
