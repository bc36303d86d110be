"""Perl support for the profiler core: Perl found in `perl` (libperl built in) or `libperl.so`, its runops
loops as the VM loop, `perl_procs` per process (where each thread's interpreter lives), frames named from
GV, CV and COP in process memory; and the regrouping of a stack's Perl frames, which BPF sends all at the
innermost runops frame, over the runops frames they belong to."""

from __future__ import annotations

from fleetprof.agent.runtime import RuntimeProcess, RuntimeSupport, Unsupported
from fleetprof.interpreters.perl.discovery import (
    PerlBinary,
    PerlUnsupported,
    inspect_perl_binary,
    is_perl_name,
)
from fleetprof.interpreters.perl.layouts import CX_OLD_OP_SHIFT, OP_REQUIRE, CXp_TRY
from fleetprof.interpreters.perl.procinfo import (
    PL_AUX_CEVALS_IN_SHIFT,
    PL_AUX_CEVALS_OUT_SHIFT,
    PL_AUX_FROM_C,
    PL_AUX_ID_IS_CV,
    PL_AUX_KIND_SHIFT,
    PL_AUX_LINE_MASK,
    PL_AUX_MAIN,
    PL_AUX_REQUIRE,
    PL_AUX_RUNLEVELS_SHIFT,
    PL_AUX_TRY,
    perl_proc_info,
)
from fleetprof.interpreters.perl.symbolizer import RUNTIME, PerlNamer
from fleetprof.interpreters.perl.walker import MAIN, native_segments
from fleetprof.interpreters.perl.walker import RawFrame as PerlRawFrame
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame

UNKNOWN_PERL = Frame(kind=FrameKind.INTERPRETED, function="<perl frame>", runtime=RUNTIME)
_FRAME, _RUNLEVEL, _C_EVAL_SCOPE = 0, 1, 2  # walker.py's walk events
_KIND_AT = 20  # struct frame.kind


def _kind(aux: int) -> int:
    return MAIN if aux & PL_AUX_MAIN else (aux >> PL_AUX_KIND_SHIFT) & 0xF


def _cx_type(aux: int) -> int:
    """The context type the namer reads (CXt_* | CXp_TRY, the eval's old op type above it)."""
    value = _kind(aux) | (CXp_TRY if aux & PL_AUX_TRY else 0)
    return value | (OP_REQUIRE << CX_OLD_OP_SHIFT << 8 if aux & PL_AUX_REQUIRE else 0)


class PerlSupport(RuntimeSupport[PerlBinary]):
    """Perl's processes: `perl_procs`, the runops loops in `interp_ranges`, FRAME_PERL named and regrouped."""

    name = "perl"
    frame_kind = layout.FRAME_PERL
    interp_kind = layout.INTERP_PERL

    def is_candidate(self, path: str) -> bool:
        """perl* executables and libperl.so*."""
        return is_perl_name(path)

    def inspect(self, path: str, file_id: str) -> PerlBinary | None:
        """The interpreter in the file (cached per file id by discovery)."""
        found = inspect_perl_binary(path, file_id)
        if isinstance(found, PerlUnsupported):
            raise Unsupported(found.reason)
        return found

    def vm_ranges(self, binary: PerlBinary) -> list[tuple[int, int]]:
        """Perl_runops_standard (and Perl_runops_debug)."""
        return [(start, start + size) for start, size in binary.runops]

    def proc_info(self, binary: PerlBinary, bias: int) -> bytes:
        """Where the threads' interpreters live and the layout's offsets."""
        info = perl_proc_info(binary, bias)
        if info is None:
            raise Unsupported(
                f"Perl {binary.version[0]}.{binary.version[1]}: no PL_current_context thread-local"
            )
        return bytes(info)

    def name_frame(self, proc: RuntimeProcess[PerlBinary], raw: RawFrame) -> Frame | None:
        """`Package::sub (file.pl:LINE)`, `Package::__ANON__`, `(eval)`, `(require)`, `main`."""
        mem = proc.memory()
        if mem is None:
            return None
        if proc.namer is None:
            proc.namer = PerlNamer(mem, proc.binary.layout)
        namer: PerlNamer = proc.namer  # type: ignore[assignment]
        aux, cop = raw.aux, raw.addr
        line = aux & PL_AUX_LINE_MASK
        if line == PL_AUX_LINE_MASK and cop:
            line = mem.u32(cop + proc.binary.layout.cop_line) or line
        cv, gv = (raw.id, 0) if aux & PL_AUX_ID_IS_CV else (0, raw.id)
        frame = namer.frame(_kind(aux), _cx_type(aux), cv, gv, cop, line)
        return None if isinstance(frame, str) else frame

    def unknown(self) -> Frame:
        """`<perl frame>`."""
        return UNKNOWN_PERL

    def regroup(self, frames: bytes) -> bytes:
        """A stack's user frames (leaf first) with its Perl frames, all sent at the innermost runops frame,
        moved over the runops native frames each belongs to (walker.native_segments); unchanged when the
        runops frames present do not match the segments (a stack cut short)."""
        size = layout.FRAME_SIZE
        records = [frames[i : i + size] for i in range(0, len(frames), size)]
        perl = [i for i, r in enumerate(records) if r[_KIND_AT] == layout.FRAME_PERL]
        if not perl or perl != list(range(perl[0], perl[0] + len(perl))):
            return frames
        raws, events = [], []
        main_program = False
        for index, record in enumerate(records[perl[0] : perl[-1] + 1]):
            aux = int.from_bytes(record[16:20], "little")
            events += [(_C_EVAL_SCOPE, 0)] * ((aux >> PL_AUX_CEVALS_IN_SHIFT) & 3)
            events += [(_RUNLEVEL, 0)] * ((aux >> PL_AUX_RUNLEVELS_SHIFT) & 3)
            events += [(_C_EVAL_SCOPE, 0)] * ((aux >> PL_AUX_CEVALS_OUT_SHIFT) & 3)
            events.append((_FRAME, index))
            main_program = main_program or bool(aux & PL_AUX_MAIN)
            raws.append(PerlRawFrame(_kind(aux), 0, 0, 0, 0, 0, bool(aux & PL_AUX_FROM_C), False))
        _, segments = native_segments(raws, events, main_program)
        loops = [i for i, r in enumerate(records) if i > perl[-1] and self._is_runops(r)]
        if len(loops) != len(segments) - 1:
            return frames
        out = records[: perl[0]]
        block = records[perl[0] : perl[-1] + 1]
        out += block[: segments[0]]
        taken, previous = segments[0], perl[-1] + 1
        for loop, count in zip(loops, segments[1:], strict=True):
            out += records[previous:loop]
            out += block[taken : taken + count]
            taken, previous = taken + count, loop + 1
        out += records[previous:]
        return b"".join(out)

    def _is_runops(self, record: bytes) -> bool:
        """Whether a native frame record is in a registered Perl's runops loop."""
        if record[_KIND_AT] != layout.FRAME_NATIVE:
            return False
        key = int.from_bytes(record[0:8], "little")
        return self.in_vm_loop(key, int.from_bytes(record[8:16], "little"))
