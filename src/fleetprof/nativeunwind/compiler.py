"""compile_unwind_table: an ELF file's CFI (and a Go binary's pclntab) to a sorted, merged, deduplicated
unwind table."""

from __future__ import annotations

from fleetprof.elf.debugfile import find_debug_file
from fleetprof.elf.reader import read_elf_info
from fleetprof.elf.view import ET_REL, ElfError
from fleetprof.nativeunwind.assemble import assemble_table
from fleetprof.nativeunwind.ehframe import FrameSection, RowSink, covered_ranges, walk_frames
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.gotable import add_go_functions
from fleetprof.nativeunwind.sources import debug_frame_section, eh_frame_section, open_elf
from fleetprof.nativeunwind.table import MAX_PC, RuleSet, UnwindStats, UnwindTable

DEBUG_FILE_COVERAGE = 0.5
"""Look for a separate debug file when the file's FDE ranges add up to less than this share of its code."""


def compile_unwind_table(path: str, debug_path: str | None = None, *, find_debug: bool = True) -> UnwindTable:
    """Compile the unwind table of ELF file `path`; raises UnwindTableError when it cannot be tabled.

    `debug_path` names a separate debug file whose `.debug_frame` fills what the file's own CFI leaves
    uncovered. Without it, when the file's own CFI covers under half its code, the debug file is looked up
    (build id, then `.gnu_debuglink`) unless `find_debug` is False.
    """
    with open_elf(path) as elf:
        if elf.elf_type == ET_REL:
            raise UnwindTableError(f"{path}: relocatable object files cannot be tabled")
        code_lo, code_hi = elf.exec_span()
        if code_hi <= code_lo:
            raise UnwindTableError(f"{path}: no executable segment")
        if code_hi > MAX_PC:
            raise UnwindTableError(
                f"{path}: code lies above 4 GiB ({code_hi:#x}); rows hold 32-bit addresses"
            )
        try:
            eh_frame, eh_error = eh_frame_section(elf), ""
        except UnwindTableError as exc:  # a corrupt .eh_frame_hdr: .debug_frame may still serve
            eh_frame, eh_error = None, str(exc)
        sections = [s for s in (eh_frame, debug_frame_section(elf)) if s is not None]
        exec_bytes = elf.exec_bytes()
    sink = RowSink(RuleSet(), UnwindStats(), code_lo, code_hi)
    go_functions = add_go_functions(path, sink)  # Go's own table first: its linker writes no CFI
    for sec in sections:
        walk_section(sec, sink)
    if debug_path is None and find_debug and sink.covered < DEBUG_FILE_COVERAGE * exec_bytes:
        debug_path = _find_debug_file(path)
    if debug_path is not None:
        debug_sec = _debug_file_section(debug_path)
        if debug_sec is not None:
            walk_section(debug_sec, sink)
            sections.append(debug_sec)
    if not sections and not go_functions:
        raise UnwindTableError(eh_error or f"{path}: no .eh_frame or .debug_frame (nothing to unwind with)")
    if eh_error:
        sink.stats.note_skipped("eh_frame_hdr_corrupt")
    if not sink.entries:
        raise UnwindTableError(f"{path}: no usable FDE ({_top_reasons(sink.stats.skipped_fdes)})")
    return assemble_table(sink)


def compile_frame_sections(sections: list[FrameSection], code_lo: int, code_hi: int) -> UnwindTable:
    """Compile raw CFI sections for code in [code_lo, code_hi): the ELF-free core, used by the fuzz tests."""
    if code_hi > MAX_PC:
        raise UnwindTableError(f"code lies above 4 GiB ({code_hi:#x}); rows hold 32-bit addresses")
    sink = RowSink(RuleSet(), UnwindStats(), code_lo, code_hi)
    for sec in sections:
        walk_section(sec, sink)
    return assemble_table(sink)


def walk_section(sec: FrameSection, sink: RowSink) -> None:
    """Walk one section; sections after the first only fill the ranges earlier ones left uncovered."""
    if sink.entries:
        sink.exclude_starts, sink.exclude_ends = covered_ranges(sink)
    walk_frames(sec, sink)
    sink.stats.sources.append(sec.name)
    if sec.is_eh:
        sink.stats.eh_frame_bytes += len(sec.data)
    else:
        sink.stats.debug_frame_bytes += len(sec.data)


def _top_reasons(counts: dict[str, int]) -> str:
    """The three most frequent reasons, for a one-line error message."""
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    return ", ".join(f"{why} x{n}" for why, n in top) or "no FDE records"


def _find_debug_file(path: str) -> str | None:
    """The separate debug file of `path` by build id or `.gnu_debuglink`, None when there is none."""
    try:
        info = read_elf_info(path)
    except ElfError:  # the search is optional
        return None
    if not info.build_id and not info.debuglink:
        return None
    return find_debug_file(path, info.build_id, info.debuglink, info.debuglink_crc)


def _debug_file_section(debug_path: str) -> FrameSection | None:
    """The `.debug_frame` of a separate debug file (its addresses are the main file's)."""
    with open_elf(debug_path) as dbg:
        return debug_frame_section(dbg, f"{debug_path}:.debug_frame")
