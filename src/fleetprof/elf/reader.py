"""Read the few ELF facts the profiler needs: build id, loadable segments, debug link, sections.

Everything here tolerates corrupt or truncated files by raising `ElfError` with a one-line message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fleetprof.elf.view import EM_NAMES, ET_NAMES, PF_X, ElfError, ElfView


@dataclass(frozen=True, slots=True)
class LoadSegment:
    """One PT_LOAD program header."""

    vaddr: int
    memsz: int
    offset: int
    filesz: int
    align: int
    executable: bool


@dataclass(frozen=True, slots=True)
class ElfInfo:
    """What the profiler needs to know about one ELF file."""

    path: str
    build_id: str  # hex, "" when absent
    elf_type: str  # "ET_EXEC" | "ET_DYN" | ...
    machine: str
    loads: tuple[LoadSegment, ...]
    debuglink: str  # .gnu_debuglink file name, "" when absent
    debuglink_crc: int
    has_symtab: bool
    has_debug_info: bool


def read_elf_info(path: str | Path) -> ElfInfo:
    """Parse `path` (any readable path, including /proc/PID/map_files/...)."""
    spath = str(path)
    with ElfView(spath) as elf:
        if elf.problem:
            raise ElfError(f"{spath}: corrupt ELF file ({elf.problem})")
        build_id = elf.build_id()
        debuglink, crc = elf.debuglink()
        sections = elf.sections
        return ElfInfo(
            path=spath,
            build_id=build_id,
            elf_type=ET_NAMES.get(elf.elf_type, str(elf.elf_type)),
            machine=EM_NAMES.get(elf.machine, str(elf.machine)),
            loads=tuple(
                LoadSegment(s.vaddr, s.memsz, s.offset, s.filesz, s.align, bool(s.flags & PF_X))
                for s in elf.loads()
            ),
            debuglink=debuglink,
            debuglink_crc=crc,
            has_symtab=".symtab" in sections,
            has_debug_info=".debug_info" in sections or ".zdebug_info" in sections,
        )
