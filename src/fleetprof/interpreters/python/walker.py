"""Reference walker: the BPF Python walk done in userspace from the same `struct py_proc_info`.

It reads only what python_offsets.h tells the BPF to read, in the same order, so its output is what the
BPF walker must produce (the lead's tests compare the two), and it tests the offsets end to end without
BPF. It also lists every thread, which the BPF (one thread per sample) does not need to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fleetprof.interpreters.python.objects import linked_list
from fleetprof.interpreters.python.process import find_python, proc_info
from fleetprof.interpreters.python.procinfo import (
    PY_F_CFRAME,
    PY_F_EXEC_TAGGED,
    PY_F_LASTI_PTR,
    PY_F_NATIVE_TID,
    PY_LASTI_NONE,
    PY_OFF_NONE,
    PY_WALK_FRAMEOBJECT,
    PY_WALK_IS_ENTRY,
    PY_WALK_SHIM,
    PyProcInfo,
    code_checksum,
)
from fleetprof.interpreters.python.symbolizer import ProcessSymbolizer
from fleetprof.process.memory import MemoryReader, ProcessMemory
from fleetprof.profile.model import Frame

MAX_INTERPRETERS = 8
MAX_THREADS = 256
MAX_DEPTH = 1024
_U64 = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One Python frame as the BPF sends it, plus where the BPF hands back to native unwinding."""

    code: int
    lasti: int  # code units, PY_LASTI_NONE before the first instruction
    checksum: int
    ends_eval_call: bool  # the last Python frame of its eval-loop call: native frames come next


@dataclass(slots=True)
class ThreadStack:
    """One thread's Python stack, innermost frame first (the order the unwinder produces)."""

    tstate: int
    thread_id: int  # pthread_t; equals the thread's fsbase on x86-64 glibc
    native_thread_id: int | None  # kernel tid (3.11+)
    raw: list[RawFrame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    error: str = ""  # why the walk stopped early, "" when it reached the bottom


def thread_states(mem: MemoryReader, info: PyProcInfo) -> list[tuple[int, int, int | None]]:
    """(tstate, thread_id, native tid) of every thread of every interpreter, bounded and cycle-safe."""
    out: list[tuple[int, int, int | None]] = []
    first_interp = mem.u64(info.runtime_addr + info.runtime_interp_head) or 0
    for interp in linked_list(mem, first_interp, info.interp_next, MAX_INTERPRETERS):
        first_tstate = mem.u64(interp + info.interp_tstate_head) or 0
        for tstate in linked_list(mem, first_tstate, info.tstate_next, MAX_THREADS):
            thread_id = mem.u64(tstate + info.tstate_thread_id)
            if thread_id is None:
                break
            native = mem.u64(tstate + info.tstate_native_tid) if info.flags & PY_F_NATIVE_TID else None
            out.append((tstate, thread_id, native))
    return out


def first_frame(mem: MemoryReader, info: PyProcInfo, tstate: int) -> int:
    """The innermost frame of a thread (0 when it runs no Python code)."""
    frame = mem.u64(tstate + info.tstate_frame) or 0
    if frame and info.flags & PY_F_CFRAME:
        frame = mem.u64(frame + info.cframe_current_frame) or 0
    return frame


def _fields(mem: MemoryReader, addr: int, spec: tuple[tuple[int, int], ...]) -> list[int] | None:
    """Little-endian unsigned fields (offset, size) of the object at `addr`, read with one read."""
    low = min(offset for offset, _ in spec)
    high = max(offset + size for offset, size in spec)
    data = mem.read(addr + low, high - low)
    if data is None:
        return None
    return [int.from_bytes(data[offset - low : offset - low + size], "little") for offset, size in spec]


def _emit(mem: MemoryReader, info: PyProcInfo, frame: int) -> tuple[int, int, int] | str:
    """(code, lasti, checksum) of one frame, exactly as the BPF computes them, or an error reason."""
    code = mem.u64(frame + info.frame_code)
    if not code:
        return "frame code unreadable"
    if info.flags & PY_F_EXEC_TAGGED:
        code &= ~3 & _U64
    if info.code_type_addr and mem.u64(code + info.ob_type) != info.code_type_addr:
        return "frame code is not a code object"
    if info.flags & PY_F_LASTI_PTR:
        pointer = mem.u64(frame + info.frame_lasti)
        if pointer is None:
            return "frame position unreadable"
        delta = pointer - (code + info.code_adaptive)
        lasti = PY_LASTI_NONE if delta < 0 else (delta >> 1) & 0xFFFFFFFF
    else:
        raw = mem.u32(frame + info.frame_lasti)
        if raw is None:
            return "frame position unreadable"
        lasti = PY_LASTI_NONE if raw & 0x80000000 else raw >> info.lasti_shift
    ints = _fields(mem, code, ((info.code_firstlineno, 4), (info.code_argcount, 4)))
    pointers = _fields(mem, code, ((info.code_filename, 8), (info.code_name, 8)))
    if ints is None or pointers is None:
        return "code object unreadable"
    checksum = code_checksum(*ints, *pointers)
    return code, lasti, checksum


def walk_frames(
    mem: MemoryReader, info: PyProcInfo, frame: int, max_depth: int = MAX_DEPTH
) -> tuple[list[RawFrame], str]:
    """Walk a frame chain from `frame` the way the BPF does across all eval-loop calls; (frames, error)."""
    frames: list[RawFrame] = []
    seen: set[int] = set()
    while frame:
        if frame in seen:
            return frames, "frame chain has a cycle"
        if len(frames) >= max_depth or len(seen) >= 4 * max_depth:
            return frames, "frame chain too deep"
        seen.add(frame)
        previous = mem.u64(frame + info.frame_previous)
        if previous is None:
            return frames, "frame unreadable"
        if info.walk_kind == PY_WALK_FRAMEOBJECT:
            ends_call = True
        else:
            entry = mem.read(frame + info.frame_entry, 1) if info.frame_entry != PY_OFF_NONE else b"\0"
            if entry is None:
                return frames, "frame unreadable"
            if info.walk_kind == PY_WALK_SHIM and entry[0] >= info.owner_shim_min:
                if frames:
                    frames[-1] = replace(frames[-1], ends_eval_call=True)
                frame = previous
                continue
            ends_call = info.walk_kind == PY_WALK_IS_ENTRY and entry[0] != 0
        emitted = _emit(mem, info, frame)
        if isinstance(emitted, str):
            return frames, emitted
        frames.append(RawFrame(*emitted, ends_eval_call=ends_call))
        frame = previous
    return frames, ""


def walk_thread_stacks(pid: int, max_depth: int = MAX_DEPTH) -> list[ThreadStack]:
    """Every thread's Python stack in process `pid`, symbolized; [] when it runs no supported CPython."""
    process = find_python(pid)
    if process is None:
        return []
    info = proc_info(process.binary, process.bias)
    with ProcessMemory(pid) as mem:
        symbolizer = ProcessSymbolizer(process, mem)
        stacks = []
        for tstate, thread_id, native in thread_states(mem, info):
            stack = ThreadStack(tstate, thread_id, native)
            stack.raw, stack.error = walk_frames(mem, info, first_frame(mem, info, tstate), max_depth)
            stack.frames = [symbolizer.symbolize(f.code, f.lasti, f.checksum) for f in stack.raw]
            stacks.append(stack)
    return stacks
