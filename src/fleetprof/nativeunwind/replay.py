"""Finish, in userspace, a stack the BPF unwinder deferred: the same steps as native_unwind.bpf.h, run over
the stack snapshot the kernel copied (registers + the stack from sp up) with the tables the agent has since
loaded. Interpreter frames can't be walked here (their frames live outside the stack copy): BPF walked them
when it deferred, and `interp` puts each eval-loop call's frames where its native frame is (or the native
frame stays). The snapshot carries the unwinder's registers as they stood
when it deferred: pc, sp, rbp, rbx while known, and the frame's general registers while they are its own.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetprof.nativeunwind.table import (
    FRAME_POINTER_RULE,
    UW_CFA_PLT,
    UW_CFA_RBP,
    UW_CFA_RBP_DEREF,
    UW_CFA_RBX,
    UW_CFA_REG,
    UW_CFA_RSP,
    UW_CFA_RSP_DEREF,
    UW_CMD_FRAME_POINTER,
    UW_CMD_SIGNAL,
    UW_CMD_STOP,
    UW_RBP_AT_CFA,
    UW_RBP_AT_RBP,
    UW_RBX_LOST,
    UW_RBX_SAME,
    Rule,
)
from fleetprof.tracer import layout

_U64 = struct.Struct("<Q")
UCONTEXT_MCONTEXT = 40
SIGCONTEXT = struct.Struct("<17Q")
"""struct sigcontext's general registers: r8..r15, rdi, rsi, rbp, rbx, rdx, rax, rcx, rsp, rip."""
SIGCONTEXT_DWARF = (8, 9, 10, 11, 12, 13, 14, 15, 5, 4, 6, 3, 1, 0, 2, 7)
"""The DWARF register number of each of those (rip aside)."""
MASK64 = (1 << 64) - 1

MappingLookup = Callable[[int], "tuple[int, int, int] | None"]
"""pc -> (file key, bias, MAPPING_FLAG_*) of the mapping holding it, or None."""
RuleLookup = Callable[[int, int], "Rule | None"]
"""(file key, ELF pc) -> the rule (None: no row covers it); raises KeyError while the table is not loaded."""
InterpFrames = Callable[[int, int], "list[tuple[int, ...]] | None"]
"""(file key, ELF pc) of a native frame -> the interpreter frames that stand for it, or None to keep it."""


class NotReady(Exception):
    """A table the replay needs is not loaded yet: try again later."""

    def __init__(self, file_key: int) -> None:
        super().__init__(f"table of {file_key:#x} not loaded")
        self.file_key = file_key


class StackCopy:
    """The copied stack: `data` holds the bytes at [base, base + len(data))."""

    def __init__(self, base: int, data: bytes) -> None:
        self.base = base
        self.data = data

    def u64(self, addr: int) -> int | None:
        """The 8 bytes at `addr`, or None outside the copy."""
        off = addr - self.base
        if off < 0 or off + 8 > len(self.data):
            return None
        return _U64.unpack_from(self.data, off)[0]

    def read(self, addr: int, size: int) -> bytes | None:
        """The `size` bytes at `addr`, or None unless all of them are in the copy."""
        off = addr - self.base
        if off < 0 or off + size > len(self.data):
            return None
        return self.data[off : off + size]


@dataclass(slots=True)
class Replay:
    """Frames found (leaf first, as (kind, id, addr, flags[, aux])) and why the walk ended (UNWIND_*)."""

    frames: list[tuple[int, ...]] = field(default_factory=list)
    error: int = layout.UNWIND_COMPLETE


@dataclass(slots=True)
class _Regs:
    """The unwinder's registers, as struct unwind_state holds them: rbx while known (None when lost), and the
    frame's own general registers by DWARF number only for a frame whose registers came from a sigcontext."""

    pc: int
    sp: int
    fp: int
    return_address: bool
    via_fp: bool = False
    rbx: int | None = None
    gprs: dict[int, int] | None = None

    def clobber(self) -> None:
        """A frame-pointer step: rbx may have changed, and the registers are no longer the frame's own."""
        self.rbx = None
        self.gprs = None


def replay(
    regs: layout.SnapshotRegs,
    stack: StackCopy,
    first: tuple[int, int, int] | None,
    mapping: MappingLookup,
    rules: RuleLookup,
    max_frames: int,
    interp: InterpFrames | None = None,
) -> Replay:
    """Unwind from the snapshot's registers. `first` is the mapping of the first pc when the kernel knew
    it (file key, bias, flags); every later pc goes through `mapping`. Raises NotReady."""
    out = Replay()
    r = _Regs(regs.pc, regs.sp, regs.fp, bool(regs.return_address))
    if regs.rbx_valid:
        r.rbx = regs.rbx
    if regs.regs_live:
        r.gprs = dict(zip(SIGCONTEXT_DWARF, regs.gprs, strict=False))
    skip_push = bool(regs.pushed)
    for _ in range(3 * max_frames):
        if r.pc == 0:
            return out
        if len(out.frames) >= max_frames:
            out.error = layout.UNWIND_ERR_DEPTH_LIMIT
            return out
        flags = layout.FRAME_FLAG_RETURN_ADDRESS if r.return_address else 0
        m = first if first is not None else mapping(r.pc)
        first = None
        if m is None:
            out.frames.append((layout.FRAME_NATIVE_RAW, 0, r.pc, flags))
            if not _frame_pointer_step(r, stack, zero_ends=r.via_fp):
                out.error = layout.UNWIND_ERR_NO_MAPPING
                return out
            continue
        key, bias, mflags = m
        pushed = not skip_push
        if pushed:
            instead = interp(key, r.pc - bias) if interp is not None else None
            if instead:
                out.frames.extend(instead[: max_frames - len(out.frames)])
            else:
                out.frames.append((layout.FRAME_NATIVE, key, r.pc - bias, flags))
        skip_push = False
        if not (mflags & layout.MAPPING_FLAG_HAS_TABLE) or mflags & layout.MAPPING_FLAG_FRAME_POINTERS:
            rule: Rule | None = FRAME_POINTER_RULE
        else:
            try:
                rule = rules(key, (r.pc - bias - (1 if r.return_address else 0)) & 0xFFFFFFFF)
            except KeyError:
                raise NotReady(key) from None
        if rule is None:
            if not _frame_pointer_step(r, stack, zero_ends=r.return_address):
                out.error = layout.UNWIND_ERR_NO_TABLE_ENTRY
                return out
            continue
        if rule[0] == UW_CMD_SIGNAL and pushed:  # entered by the handler's return, not by a call
            out.frames[-1] = (*out.frames[-1][:3], 0)
        done, error = _apply(rule, r, stack)
        if error:
            out.error = error
            return out
        if done:
            return out
    out.error = layout.UNWIND_ERR_DEPTH_LIMIT
    return out


def _frame_pointer_step(r: _Regs, stack: StackCopy, zero_ends: bool) -> bool:
    """One frame by the rbp chain; False when it can't go on (r.pc = 0 marks a complete stack)."""
    fp = r.fp
    if fp == 0:
        r.pc = 0
        return zero_ends
    if fp < r.sp or fp & 7:
        return False
    saved, ret = stack.u64(fp), stack.u64(fp + 8)
    if saved is None or ret is None:
        return False
    r.fp, r.pc, r.sp = saved, ret, fp + 16
    r.return_address = True
    r.via_fp = True
    r.clobber()
    return True


def _apply(rule: Rule, r: _Regs, stack: StackCopy) -> tuple[bool, int]:
    """Apply one table rule; (stack complete, UNWIND_* error)."""
    kind, rbp_kind, off, aux, rbp_off, rbx_off = rule
    if kind == UW_CFA_RSP:
        cfa = r.sp + off
    elif kind == UW_CFA_RBP:
        cfa = r.fp + off
    elif kind in (UW_CFA_RSP_DEREF, UW_CFA_RBP_DEREF):
        base = stack.u64((r.sp if kind == UW_CFA_RSP_DEREF else r.fp) + off)
        if base is None:
            return False, layout.UNWIND_ERR_READ_FAILED
        cfa = base + aux
    elif kind == UW_CFA_PLT:
        cfa = r.sp + off + (8 if (r.pc & 15) >= aux else 0)
    elif kind == UW_CFA_RBX:
        if r.rbx is None:
            return False, layout.UNWIND_ERR_INVALID_RULE
        cfa = r.rbx + off
    elif kind == UW_CFA_REG:
        reg = r.gprs.get(aux) if r.gprs is not None else None
        if reg is None:
            return False, layout.UNWIND_ERR_INVALID_RULE
        cfa = reg + off
    elif kind == UW_CMD_STOP:
        return True, 0
    elif kind == UW_CMD_SIGNAL:
        r.gprs = None
        raw = stack.read(r.sp + UCONTEXT_MCONTEXT, SIGCONTEXT.size)
        if raw is None:
            return False, layout.UNWIND_ERR_READ_FAILED
        values = SIGCONTEXT.unpack(raw)
        r.gprs = dict(zip(SIGCONTEXT_DWARF, values, strict=False))
        r.fp, r.sp, r.pc, r.rbx, r.return_address = r.gprs[6], r.gprs[7], values[16], r.gprs[3], False
        return r.pc == 0, 0
    elif kind == UW_CMD_FRAME_POINTER:
        if not _frame_pointer_step(r, stack, zero_ends=r.return_address):
            return False, layout.UNWIND_ERR_FRAME_POINTER
        return r.pc == 0, 0
    else:
        return False, layout.UNWIND_ERR_INVALID_RULE
    cfa &= MASK64
    if cfa < r.sp + 8:
        return False, layout.UNWIND_ERR_BAD_FRAME
    ra = stack.u64(cfa - 8)
    if ra is None:
        return False, layout.UNWIND_ERR_READ_FAILED
    if rbp_kind == UW_RBP_AT_CFA and cfa + rbp_off >= r.sp:
        # A slot below sp was popped already (GCC's epilogue CFI keeps the rule): rbp is the caller's.
        saved = stack.u64(cfa + rbp_off)
        if saved is None:
            return False, layout.UNWIND_ERR_READ_FAILED
        r.fp = saved
    elif rbp_kind == UW_RBP_AT_RBP:
        saved = stack.u64(r.fp + rbp_off)  # unreadable after gcc's `leave`: rbp already is the caller's
        if saved is not None:
            r.fp = saved
    if rbx_off == UW_RBX_LOST:
        r.rbx = None
    elif rbx_off != UW_RBX_SAME and cfa + rbx_off >= r.sp:
        r.rbx = stack.u64(cfa + rbx_off)  # an unreadable slot loses rbx, not the stack
    r.sp, r.pc, r.return_address, r.via_fp, r.gprs = cfa, ra, True, False, None
    return ra == 0, 0
