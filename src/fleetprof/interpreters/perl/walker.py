"""Reference walker: a live Perl interpreter's stack read from its memory, the way the BPF walker will.

From an interpreter (`PL_curinterp` or the thread's `PL_current_context`), PL_curstackinfo is the innermost
runlevel: its context array (si_cxstack[0..si_cxix]) holds one PERL_CONTEXT per sub, format, eval, loop
and block; si_prev is the runlevel the C code that pushed this one was running (sort blocks, tie, overload,
DESTROY, signal handlers, MULTICALL). Walked innermost first, sub, format and eval contexts are frames;
PL_curcop is the innermost frame's statement and each frame's `blk_oldcop` its caller's, so a frame's line
is the COP of the frame above it. The main program is one more frame at the bottom of PERLSI_MAIN.

Perl subs called from Perl do not recurse in C: pp_entersub returns the sub's first op to the same
Perl_runops_standard loop. A new runops native frame starts only where C runs Perl code: a stackinfo
pushed by C (pp_sort's sort block, MULTICALL, call_sv under PUSHSTACKi), a sub entered by call_sv on the
current stackinfo (its context's retop is NULL), or an eval/require entered under CATCH (docatch). See
`native_segments`; `PerlStack.segments` counts the frames each runops native frame stands for, innermost
first. Every loop is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fleetprof.interpreters.perl.discovery import PerlUnsupported
from fleetprof.interpreters.perl.layouts import (
    CXTYPEMASK,
    CVf_NAMED,
    CXp_EVALBLOCK,
    CXp_SUB_RE_FAKE,
    CXt_EVAL,
    CXt_FORMAT,
    CXt_SUB,
    PerlLayout,
)
from fleetprof.interpreters.perl.process import PerlProcess, find_perl
from fleetprof.interpreters.perl.symbolizer import PerlNamer
from fleetprof.process.memory import MemoryReader, ProcessMemory
from fleetprof.profile.model import Frame, FrameKind

MAX_STACKINFOS = 64  # runlevels followed down si_prev
MAX_CONTEXTS = 4096  # contexts read in all (loops and blocks count too)
MAIN = 0  # RawFrame.kind of the main program (no context: the bottom of PERLSI_MAIN)


@dataclass(frozen=True, slots=True)
class RawFrame:
    """One Perl frame as the BPF walker will send it."""

    kind: int  # CXt_SUB, CXt_FORMAT, CXt_EVAL, or MAIN for the main program
    cx_type: int  # the context's blku_type (type | CXp_* flags; blku_u16 << 8 for evals), 0 for MAIN
    cv: int  # the sub's CV (blk_sub.cv / blk_eval.cv), 0 for MAIN
    gv: int  # the sub's GV (GvEGV when set), resolved at sample time; 0 for lexical subs, evals, MAIN
    cop: int  # the COP this frame is at (PL_curcop for the innermost, else the next frame's blk_oldcop)
    line: int  # cop_line of `cop`, read at sample time (COPs of eval'd code are freed with it)
    entered_from_c: bool  # a sub or eval whose retop is NULL: run by call_sv, sort, MULTICALL or eval_sv
    ends_native_segment: bool  # the last (outermost) Perl frame its runops native frame stands for

    @property
    def is_named_cv(self) -> bool:
        """A lexical (`my sub`) or otherwise NAMED sub: named from the CV's HEK and stash, not a GV."""
        return self.kind in (CXt_SUB, CXt_FORMAT) and self.gv == 0


@dataclass(slots=True)
class PerlStack:
    """A Perl thread's stack: `raw` innermost first (walk order), `frames` root first (Stack order)."""

    raw: list[RawFrame] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)  # frames per runops native frame, innermost first
    stackinfo_types: list[int] = field(default_factory=list)  # si_type of each runlevel, innermost first
    error: str = ""  # why the walk stopped early, "" when it reached the main program


def _u(data: bytes, offset: int, size: int = 8) -> int:
    return int.from_bytes(data[offset : offset + size], "little")


def _gv_of(mem: MemoryReader, layout: PerlLayout, cv: int) -> tuple[int, int] | str:
    """(GV or 0 for a NAMED sub, CV flags) of `cv`: xcv_gv_u, and the GP's effective GV when set."""
    body = mem.u64(cv + layout.sv_any) if cv else None
    head = mem.read(body + layout.xcv_gv, layout.xcv_flags + 4 - layout.xcv_gv) if body else None
    if head is None:
        return f"CV {cv:#x} unreadable"
    gv, flags = _u(head, 0), _u(head, layout.xcv_flags - layout.xcv_gv, 4)
    if flags & CVf_NAMED or not gv:
        return 0, flags
    gp = mem.u64(gv + layout.sv_u)
    egv = mem.u64(gp + layout.gp_egv) if gp else None
    return egv or gv, flags


# Walk events, innermost first: a frame (its index), a runlevel C pushed ends, C's own G_EVAL scope.
_FRAME, _RUNLEVEL, _C_EVAL_SCOPE = 0, 1, 2


def native_segments(
    frames: list[RawFrame], events: list[tuple[int, int]], main_program: bool = True
) -> tuple[list[RawFrame], list[int]]:
    """Which runops native frame each Perl frame belongs to: (frames with `ends_native_segment` set on the
    outermost frame of each segment, frames per segment innermost first).

    Replays, outermost first, where C started a runops loop: perl_run (the main program); a runlevel C
    pushed (sort, MULTICALL, call_sv under PUSHSTACKi), which also sets CATCH; a sub or eval_sv eval
    entered from C (retop NULL; call_sv sets CATCH unless it runs under its own G_EVAL JMPENV); and an
    eval, try or require entered while CATCH is set, which pp_ctl.c's docatch() runs in a nested runops
    under a fresh JMPENV (CATCH off again). Without the main program (an ithread's interpreter), the
    outermost runops is the one C started for the thread's sub.
    """
    sizes, starts = [0], set()
    catch = fresh_env = False
    opened = not main_program
    for kind, index in reversed(events):
        if kind == _RUNLEVEL:
            sizes.append(0)
            opened, catch, fresh_env = True, True, False
            continue
        if kind == _C_EVAL_SCOPE:
            fresh_env = True
            continue
        frame = frames[index]
        if frame.entered_from_c:
            if not opened:
                sizes.append(0)
            catch = frame.kind != CXt_EVAL and not fresh_env
        elif frame.kind == CXt_EVAL and catch:
            sizes.append(0)
            catch = False
        opened = fresh_env = False
        if sizes[-1] == 0:
            starts.add(index)
        sizes[-1] += 1
    marked = [replace(f, ends_native_segment=i in starts) for i, f in enumerate(frames)]
    return marked, sizes[::-1]


class _Walk:
    """The state of one walk: frames and events so far, the COP of the next frame."""

    def __init__(self, mem: MemoryReader, layout: PerlLayout, cop: int, main_program: bool) -> None:
        self.mem, self.layout, self.cop = mem, layout, cop
        self.main_program = main_program
        self.frames: list[RawFrame] = []
        self.events: list[tuple[int, int]] = []

    def line(self, cop: int) -> int:
        """cop_line of `cop` (0 for none or unreadable)."""
        return (self.mem.u32(cop + self.layout.cop_line) or 0) if cop else 0

    def emit(self, kind: int, cx_type: int, cv: int, gv: int, from_c: bool) -> None:
        """Add the frame at the current COP."""
        self.events.append((_FRAME, len(self.frames)))
        self.frames.append(RawFrame(kind, cx_type, cv, gv, self.cop, self.line(self.cop), from_c, False))

    def context(self, cx: bytes) -> str:
        """Emit the frame of one context (none for loops, blocks, fake regex subs and C's eval scopes)
        and move the COP to its caller's; returns why the walk must stop, "" to go on."""
        lay = self.layout
        cx_type = cx[lay.cx_type]
        kind = cx_type & CXTYPEMASK
        if kind in (CXt_SUB, CXt_FORMAT) and not cx_type & CXp_SUB_RE_FAKE:
            cv, retop = _u(cx, lay.cx_sub_cv), _u(cx, lay.cx_sub_retop)
            found = _gv_of(self.mem, lay, cv)
            if isinstance(found, str):
                return found
            self.emit(kind, cx_type, cv, found[0], retop == 0)
        elif kind == CXt_EVAL:
            retop = _u(cx, lay.cx_eval_retop)
            if cx_type & CXp_EVALBLOCK and retop == 0:
                self.events.append((_C_EVAL_SCOPE, 0))  # call_sv(G_EVAL)'s scope: no Perl code of its own
                return ""
            u16 = _u(cx, lay.cx_u16, 2)
            self.emit(kind, cx_type | u16 << 8, _u(cx, lay.cx_eval_cv), 0, retop == 0)
        else:
            return ""
        self.cop = _u(cx, lay.cx_oldcop)
        return ""

    def result(self, types: list[int], error: str) -> tuple[list[RawFrame], list[int], list[int], str]:
        """(frames innermost first, frames per runops segment, si types, why it stopped early or "")."""
        frames, segments = native_segments(self.frames, self.events, self.main_program)
        return frames, segments, types, error


def walk_interpreter(
    mem: MemoryReader,
    layout: PerlLayout,
    interp: int,
    max_contexts: int = MAX_CONTEXTS,
    main_program: bool = True,
) -> tuple[list[RawFrame], list[int], list[int], str]:
    """(frames innermost first, frames per runops segment, si types, why it stopped early or "").

    `main_program`: the interpreter is PL_curinterp, whose PERLSI_MAIN bottom is the main program (an
    ithread's interpreter runs only the thread's sub, called from C: no `main` frame below it).
    """
    base = min(layout.interp_curcop, layout.interp_curstackinfo)
    head = mem.read(interp + base, layout.interp_read_size)
    if head is None:
        return [], [], [], f"interpreter {interp:#x} unreadable"
    walk = _Walk(mem, layout, _u(head, layout.interp_curcop - base), main_program)
    si, budget, types = _u(head, layout.interp_curstackinfo - base), max_contexts, []
    for _ in range(MAX_STACKINFOS):
        info = mem.read(si, layout.si_read_size) if si else None
        if info is None:
            return walk.result(types, f"stackinfo {si:#x} unreadable")
        cxstack, prev = _u(info, layout.si_cxstack), _u(info, layout.si_prev)
        cxix = int.from_bytes(info[layout.si_cxix : layout.si_cxix + 4], "little", signed=True)
        types.append(int.from_bytes(info[layout.si_type : layout.si_type + 4], "little", signed=True))
        for index in range(cxix, -1, -1):
            budget -= 1
            cx = mem.read(cxstack + index * layout.cx_size, layout.cx_read_size) if budget >= 0 else None
            if cx is None:
                why = "context stack deeper than the walk's bound" if budget < 0 else "context unreadable"
                return walk.result(types, f"{why} ({cxstack:#x}[{index}])")
            stop = walk.context(cx)
            if stop:
                return walk.result(types, stop)
        if not prev:
            if main_program:
                walk.emit(MAIN, 0, 0, 0, False)
            return walk.result(types, "")
        if cxix >= 0:
            walk.events.append((_RUNLEVEL, 0))  # pushed by C, which ran its Perl code in a runops of its own
        si = prev
    return walk.result(types, f"more than {MAX_STACKINFOS} stackinfos")


def symbolize(namer: PerlNamer, raw: list[RawFrame]) -> tuple[list[Frame], str]:
    """Frames for `raw` in the same order (an error frame stands for one that cannot be named)."""
    frames: list[Frame] = []
    first_error = ""
    for item in raw:
        frame = namer.frame(item.kind, item.cx_type, item.cv, item.gv, item.cop, item.line)
        if isinstance(frame, str):
            first_error = first_error or frame
            frame = Frame(kind=FrameKind.ERROR, function=f"[unwind: perl: {frame}]")
        frames.append(frame)
    return frames, first_error


def walk_process(
    process: PerlProcess, mem: MemoryReader, interp: int | None = None, max_contexts: int = MAX_CONTEXTS
) -> PerlStack:
    """The Perl stack of `interp` (default: PL_curinterp), symbolized; the main program is its bottom
    frame only in PL_curinterp (other interpreters run ithreads)."""
    first = process.interpreter(mem)
    if interp is None:
        if isinstance(first, str):
            return PerlStack(error=first)
        interp = first
    layout = process.binary.layout
    raw, segments, types, error = walk_interpreter(mem, layout, interp, max_contexts, interp == first)
    frames, name_error = symbolize(PerlNamer(mem, layout), raw)
    return PerlStack(raw, frames[::-1], segments, types, error or name_error)


def walk_pid(pid: int, max_contexts: int = MAX_CONTEXTS) -> PerlStack | PerlUnsupported:
    """The Perl stack of process `pid`'s first interpreter, or why it has none fleetprof can walk."""
    process = find_perl(pid)
    if isinstance(process, PerlUnsupported):
        return process
    with ProcessMemory(process.pid) as mem:
        return walk_process(process, mem, max_contexts=max_contexts)
