"""Reference walker: a live Ruby thread's stack read from its memory, the way the BPF walker will.

From an execution context (EC), the control frames run from `ec->cfp` (innermost) up to the end of the
VM stack. Per frame one read of the control frame gives pc, iseq and ep; the environment below ep gives
the frame flags (ep[0]), the previous ep (ep[-1]) and the method entry slot (ep[-2]). Like CRuby's
rb_profile_frames, Ruby frames (no CFRAME flag, not DUMMY) are kept with their iseq and pc, and C frames
only when their method entry is a C function (`Integer#times`); the method entry of a block is its
method's, found by following ep[-1] up to the local ep. That (iseq, pc, method entry) triple is all a
frame needs at sample time; names and lines come later (symbolizer.py). Every loop is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetprof.interpreters.ruby.discovery import RubyUnsupported
from fleetprof.interpreters.ruby.layouts import (
    FL_USHIFT,
    IMEMO_MASK,
    IMEMO_MENT,
    IMEMO_SVAR,
    T_IMEMO,
    T_MASK,
    VM_ENV_FLAG_LOCAL,
    VM_FRAME_FLAG_CFRAME,
    VM_FRAME_FLAG_FINISH,
    VM_FRAME_MAGIC_DUMMY,
    VM_FRAME_MAGIC_MASK,
    VM_METHOD_TYPE_CFUNC,
    VM_METHOD_TYPE_ISEQ,
    RubyLayout,
)
from fleetprof.interpreters.ruby.process import RubyProcess, find_ruby
from fleetprof.interpreters.ruby.symbolizer import RubyNamer
from fleetprof.process.memory import MemoryReader, ProcessMemory
from fleetprof.profile.model import Frame, FrameKind

MAX_DEPTH = 4096  # control frames walked (C frames without a method entry count too)
MAX_EP_HOPS = 16  # block nesting followed to find the method entry
ENV_READ = 24  # ep[-2] (me/cref), ep[-1] (specval), ep[0] (flags): one read from ep - 16


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One Ruby frame as the BPF walker will send it."""

    cfp: int  # the control frame (volatile: only for debugging)
    iseq: int  # cfp->iseq of a Ruby frame, 0 for a C function
    pc: int  # cfp->pc (next instruction) of a Ruby frame, 0 for a C function
    method_entry: int  # rb_callable_method_entry_t * (ISEQ or CFUNC), 0 for none (<main>, top blocks)
    frame_flags: int  # ep[0]: VM_FRAME_MAGIC_* | flags

    @property
    def ends_native_segment(self) -> bool:
        """VM_FRAME_FLAG_FINISH: entered from C, so the last Ruby frame its rb_vm_exec native frame
        stands for (the script's <main>, a block yielded to from a C method, a method called by C)."""
        return bool(self.frame_flags & VM_FRAME_FLAG_FINISH)

    @property
    def is_cfunc(self) -> bool:
        """A C function called from Ruby (`Integer#times`), named from its method entry."""
        return self.iseq == 0


@dataclass(slots=True)
class RubyStack:
    """A Ruby thread's stack: `raw` innermost first (walk order), `frames` root first (Stack order)."""

    raw: list[RawFrame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    error: str = ""  # why the walk stopped early, "" when it reached the bottom


def _u64(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "little")


def _imemo_type(mem: MemoryReader, value: int) -> int:
    """The imemo type of heap object `value`, -1 for Qfalse, immediates, other types or bad memory."""
    if not value or value & 7:
        return -1
    flags = mem.u64(value)
    if flags is None or flags & T_MASK != T_IMEMO:
        return -1
    return (flags >> FL_USHIFT) & IMEMO_MASK


def _check_method_entry(mem: MemoryReader, layout: RubyLayout, value: int, can_be_svar: bool) -> int:
    """vm_insnhelper.c check_method_entry: `value` if it is a method entry, looking inside an svar."""
    kind = _imemo_type(mem, value)
    if kind == IMEMO_MENT:
        return value
    if kind == IMEMO_SVAR and can_be_svar:
        inner = mem.u64(value + layout.svar_cref_or_me) or 0
        return inner if _imemo_type(mem, inner) == IMEMO_MENT else 0
    return 0


def method_entry(mem: MemoryReader, layout: RubyLayout, ep: int) -> tuple[int, int] | str:
    """(method entry or 0, frame flags) of the frame whose environment is `ep` (rb_vm_frame_method_entry)."""
    env = mem.read(ep - 16, ENV_READ)
    if env is None:
        return f"environment {ep:#x} unreadable"
    flags = _u64(env, 16)
    for _ in range(MAX_EP_HOPS):
        me_cref, specval, env_flags = _u64(env, 0), _u64(env, 8), _u64(env, 16)
        local = bool(env_flags & VM_ENV_FLAG_LOCAL)
        found = _check_method_entry(mem, layout, me_cref, local)
        if found or local:
            return found, flags
        prev = specval & ~3
        env = mem.read(prev - 16, ENV_READ) if prev else None
        if env is None:
            return f"outer environment {prev:#x} unreadable"
    return 0, flags


def method_type(mem: MemoryReader, layout: RubyLayout, entry: int) -> int:
    """rb_method_definition_t.type (low 4 bits) of method entry `entry`, -1 when unreadable."""
    definition = mem.u64(entry + layout.me_def) if entry else None
    head = mem.read(definition, 1) if definition else None
    return head[0] & 0xF if head else -1


def walk_ec(
    mem: MemoryReader, layout: RubyLayout, ec: int, max_depth: int = MAX_DEPTH
) -> tuple[list[RawFrame], str]:
    """The frames of execution context `ec`, innermost first; (frames, why it stopped early or "")."""
    head = mem.read(ec, layout.ec_read_size)
    if head is None:
        return [], f"execution context {ec:#x} unreadable"
    stack, size = _u64(head, layout.ec_vm_stack), _u64(head, layout.ec_vm_stack_size)
    cfp, end = _u64(head, layout.ec_cfp), stack + size * 8
    if not stack or size > 1 << 28 or not stack < cfp <= end:
        return [], f"control frame {cfp:#x} outside the VM stack"
    frames: list[RawFrame] = []
    for _ in range(max_depth):
        if cfp + layout.cfp_size > end:
            return frames, ""
        data = mem.read(cfp, layout.cfp_read_size)
        if data is None:
            return frames, f"control frame {cfp:#x} unreadable"
        found = method_entry(mem, layout, _u64(data, layout.cfp_ep))
        if isinstance(found, str):
            return frames, found
        entry, flags = found
        kind = method_type(mem, layout, entry)
        if flags & VM_FRAME_MAGIC_MASK == VM_FRAME_MAGIC_DUMMY:
            pass  # pushed below user code (ruby_exec_node, thread start): no Ruby frame
        elif not flags & VM_FRAME_FLAG_CFRAME:
            iseq = _u64(data, layout.cfp_iseq)
            if not iseq:
                return frames, f"Ruby frame {cfp:#x} without an iseq"
            me = entry if kind == VM_METHOD_TYPE_ISEQ else 0
            frames.append(RawFrame(cfp, iseq, _u64(data, layout.cfp_pc), me, flags))
        elif kind == VM_METHOD_TYPE_CFUNC:
            frames.append(RawFrame(cfp, 0, 0, entry, flags))
        cfp += layout.cfp_size
    return frames, f"stack deeper than {max_depth} control frames"


def symbolize(namer: RubyNamer, raw: list[RawFrame]) -> tuple[list[Frame], str]:
    """Frames for `raw` in the same order (an error frame stands for one that cannot be named)."""
    frames: list[Frame] = []
    first_error = ""
    for item in raw:
        frame = namer.frame(item.iseq, item.pc, item.method_entry)
        if isinstance(frame, str):
            first_error = first_error or frame
            frame = Frame(kind=FrameKind.ERROR, function=f"[unwind: ruby: {frame}]")
        frames.append(frame)
    return frames, first_error


def walk_process(
    process: RubyProcess, mem: MemoryReader, ec: int | None = None, max_depth: int = MAX_DEPTH
) -> RubyStack:
    """The Ruby stack of `ec` (default: the main ractor's running or main thread), symbolized."""
    if ec is None:
        found = process.execution_context(mem)
        if isinstance(found, str):
            return RubyStack(error=found)
        ec = found
    layout = process.binary.layout
    raw, error = walk_ec(mem, layout, ec, max_depth)
    table = process.binary.global_symbols
    namer = RubyNamer(mem, layout, table + process.bias if table else 0)
    frames, name_error = symbolize(namer, raw)
    return RubyStack(raw, frames[::-1], error or name_error)


def walk_pid(pid: int, max_depth: int = MAX_DEPTH) -> RubyStack | RubyUnsupported:
    """The Ruby stack of process `pid`'s main ractor, or why it has none fleetprof can walk."""
    process = find_ruby(pid)
    if isinstance(process, RubyUnsupported):
        return process
    with ProcessMemory(pid) as mem:
        return walk_process(process, mem, max_depth=max_depth)
