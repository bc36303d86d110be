"""Unwind rows for Go code from its pclntab: Go's linker writes no `.eh_frame`, but every function's pcsp
table says how far below its entry SP each run of its code keeps the stack pointer. CFA = rsp + delta + 8
at every pc, so frameless leaves (which frame pointers skip, losing their caller) unwind exactly, stripped
binaries included. The caller's rbp sits at CFA-16 once the frame is set up (Go saves it there on every
frame it makes); the roots of goroutine and thread stacks end the stack.
"""

from __future__ import annotations

from fleetprof.elf.view import ElfError
from fleetprof.nativeunwind.cfi import Program
from fleetprof.nativeunwind.ehframe import RowSink
from fleetprof.nativeunwind.table import (
    FRAME_POINTER_RULE,
    STOP_RULE,
    UW_CFA_RSP,
    UW_RBP_AT_CFA,
    UW_RBP_SAME,
    UW_RBX_LOST,
    Rule,
)
from fleetprof.symbolize.golang.elffile import GoElf
from fleetprof.symbolize.golang.pclntab import PclntabError

ROOTS = frozenset({"runtime.goexit", "runtime.mstart", "runtime.rt0_go", "runtime.goexit0", "runtime.mcall"})
"""Functions at the bottom of Go stacks: a goroutine's fake caller, a thread's start, the process's start
(and mcall, which switches to the g0 stack): unwinding past them reads what is not a frame."""
SOURCE = "gopclntab"


def sp_rule(delta: int) -> Rule:
    """The rule for code `delta` bytes below its entry SP; rbx is not preserved across Go's ABI."""
    if delta < 0:
        return FRAME_POINTER_RULE
    if delta >= 8:
        return (UW_CFA_RSP, UW_RBP_AT_CFA, delta + 8, 0, -16, UW_RBX_LOST)
    return (UW_CFA_RSP, UW_RBP_SAME, delta + 8, 0, 0, UW_RBX_LOST)


def add_go_functions(path: str, sink: RowSink) -> int:
    """Record one entry per Go function of `path` in `sink` (before its CFI sections, which then only fill
    the code Go's table leaves out: cgo's C); the number added, 0 for a file that is not Go or whose pclntab
    is unusable (its CFI, if any, still serves)."""
    try:
        go = GoElf(path)
    except (ElfError, PclntabError, OSError):
        sink.stats.note_skipped("gopclntab_unusable")
        return 0
    try:
        if go.table is None:
            return 0
        return _add(go, sink)
    except PclntabError:
        sink.stats.note_skipped("gopclntab_unusable")
        return 0
    finally:
        go.close()


def _add(go: GoElf, sink: RowSink) -> int:
    assert go.table is not None
    add_rule = sink.rules.add
    stop = add_rule(STOP_RULE) << 32
    rule_of: dict[int, int] = {}
    code_lo, code_hi = sink.code_lo, sink.code_hi
    added = 0
    for entry, end, name, pcs, deltas in go.table.sp_deltas():
        if entry < code_lo or end > code_hi or end <= entry:
            continue
        if name in ROOTS:
            rows: tuple[int, ...] = (stop,)
        else:
            out: list[int] = []
            start = 0
            last = -1
            for run_end, delta in zip(pcs, deltas, strict=True):
                if start >= end - entry:
                    break
                rid = rule_of.get(delta)
                if rid is None:
                    rid = rule_of[delta] = add_rule(sp_rule(delta))
                if rid != last:
                    out.append(rid << 32 | start)
                    last = rid
                start = run_end
            if not out:
                continue
            rows = tuple(out)
        sink.keys.append(entry << 32 | len(sink.entries))
        sink.entries.append((entry, end, Program(rows, rows[-1] & 0xFFFFFFFF, (), False)))
        sink.covered += end - entry
        added += 1
    sink.stats.fde_count += added
    if added:
        sink.stats.sources.append(SOURCE)
    return added
