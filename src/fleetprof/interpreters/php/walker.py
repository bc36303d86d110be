"""Reference walker: a live PHP process's stack read from its memory, the way the BPF walker will.

From &EG(current_execute_data), each zend_execute_data gives (one read of its head) opline, func, call
info and prev_execute_data; the walk reads func->type, and for user and eval code opline->lineno. That
(func, line, call info) triple is all a frame needs at sample time; names come later from the
zend_function (symbolizer.py). The walk is bounded (depth cap, cycle check) and stops with a reason on a
bad pointer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetprof.interpreters.php.discovery import PhpUnsupported
from fleetprof.interpreters.php.layouts import (
    FUNCTION_TYPES,
    ZEND_CALL_CODE,
    ZEND_CALL_TOP,
    ZEND_INTERNAL_FUNCTION,
    PhpLayout,
)
from fleetprof.interpreters.php.process import PhpProcess, find_php
from fleetprof.interpreters.php.symbolizer import FunctionReader
from fleetprof.process.memory import MemoryReader, ProcessMemory
from fleetprof.profile.model import Frame, FrameKind

MAX_DEPTH = 1024


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One PHP frame as the BPF walker will send it."""

    execute_data: int
    func: int  # zend_function *
    fn_type: int  # ZEND_INTERNAL_FUNCTION, ZEND_USER_FUNCTION or ZEND_EVAL_CODE
    line: int  # opline->lineno for user and eval code, 0 for internal functions
    call_info: int  # Z_TYPE_INFO(This): call flags in the top 16 bits

    @property
    def ends_native_segment(self) -> bool:
        """ZEND_CALL_TOP: entered from C, so the last PHP frame its execute_ex native frame stands for."""
        return bool(self.call_info & ZEND_CALL_TOP)

    @property
    def is_code(self) -> bool:
        """ZEND_CALL_CODE: a file's top-level code (script or include) or eval'd code."""
        return bool(self.call_info & ZEND_CALL_CODE)


@dataclass(slots=True)
class PhpStack:
    """A PHP thread's stack, innermost frame first (the order unwinders produce)."""

    raw: list[RawFrame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    error: str = ""  # why the walk stopped early, "" when it reached the bottom


def _field(data: bytes, offset: int, size: int = 8) -> int:
    """A little-endian unsigned field of `data`."""
    return int.from_bytes(data[offset : offset + size], "little")


def walk_execute_data(
    mem: MemoryReader, layout: PhpLayout, execute_data: int, max_depth: int = MAX_DEPTH
) -> tuple[list[RawFrame], str]:
    """Follow prev_execute_data from `execute_data`; (frames, why it stopped early or "")."""
    frames: list[RawFrame] = []
    seen: set[int] = set()
    ex = execute_data
    while ex:
        if ex in seen:
            return frames, "execute_data chain has a cycle"
        if len(seen) >= max_depth:
            return frames, f"stack deeper than {max_depth} frames"
        seen.add(ex)
        head = mem.read(ex, layout.ex_read_size)
        if head is None:
            return frames, f"execute_data {ex:#x} unreadable"

        func, prev = _field(head, layout.ex_func), _field(head, layout.ex_prev)
        if func:  # NULL func: a dummy frame zend_call_function pushes for includes and magic calls
            fn_type = (mem.read(func + layout.fn_type, 1) or b"\xff")[0]
            if fn_type not in FUNCTION_TYPES:
                return frames, f"zend_function {func:#x} unreadable or of type {fn_type}"
            line = 0
            opline = _field(head, layout.ex_opline)
            if fn_type != ZEND_INTERNAL_FUNCTION and opline:
                line = mem.u32(opline + layout.op_lineno) or 0
            frames.append(RawFrame(ex, func, fn_type, line, _field(head, layout.ex_call_info, 4)))
        ex = prev
    return frames, ""


def symbolize(mem: MemoryReader, layout: PhpLayout, raw: list[RawFrame]) -> tuple[list[Frame], str]:
    """Frames for `raw` (an error frame stands for one that cannot be named); (frames, first error)."""
    reader = FunctionReader(mem, layout)
    frames: list[Frame] = []
    first_error = ""
    for item in raw:
        frame = reader.frame(item.func, item.line)
        if isinstance(frame, str):
            first_error = first_error or frame
            frame = Frame(kind=FrameKind.ERROR, function=f"[unwind: php: {frame}]")
        frames.append(frame)
    return frames, first_error


def walk_process(process: PhpProcess, mem: MemoryReader, max_depth: int = MAX_DEPTH) -> PhpStack:
    """The current PHP stack of an NTS process (its one PHP thread), symbolized."""
    layout = process.binary.layout
    start = mem.u64(process.current_execute_data_addr)
    if start is None:
        return PhpStack(error="executor_globals unreadable")
    raw, error = walk_execute_data(mem, layout, start, max_depth)
    frames, name_error = symbolize(mem, layout, raw)
    return PhpStack(raw, frames, error or name_error)


def walk_pid(pid: int, max_depth: int = MAX_DEPTH) -> PhpStack | PhpUnsupported:
    """The PHP stack of process `pid`, or why it has none fleetprof can walk."""
    process = find_php(pid)
    if isinstance(process, PhpUnsupported):
        return process
    with ProcessMemory(pid) as mem:
        return walk_process(process, mem, max_depth)
