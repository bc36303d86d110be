"""Read the few ELF facts the profiler needs: build id, loadable segments, debug link, sections.

Everything here tolerates corrupt or truncated files by raising `ElfError` with a one-line message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.elffile import ELFFile

ELF_MAGIC = b"\x7fELF"
PT_LOAD = 1
PF_X = 1
NT_GNU_BUILD_ID = 3


class ElfError(Exception):
    """The file is not a usable ELF file; the message is one line naming the file and the reason."""


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


def _open_elf(stream: BinaryIO, path: str) -> ELFFile:
    head = stream.read(4)
    stream.seek(0)
    if head != ELF_MAGIC:
        raise ElfError(f"{path}: not an ELF file")
    try:
        return ELFFile(stream)
    except (_PyElfError, struct.error, ValueError) as exc:
        raise ElfError(f"{path}: corrupt ELF header ({exc})") from None


def read_elf_info(path: str | Path) -> ElfInfo:
    """Parse `path` (any readable path, including /proc/PID/map_files/...)."""
    spath = str(path)
    try:
        with open(spath, "rb") as stream:
            elf = _open_elf(stream, spath)
            try:
                return _collect(elf, spath)
            except (_PyElfError, struct.error, ValueError, KeyError, AttributeError) as exc:
                raise ElfError(f"{spath}: corrupt ELF file ({exc})") from None
    except OSError as exc:
        raise ElfError(f"{spath}: cannot read ({exc.strerror or exc})") from None


def _collect(elf: ELFFile, path: str) -> ElfInfo:
    loads = []
    build_id = ""
    for seg in elf.iter_segments():
        ptype = seg["p_type"]
        if ptype == "PT_LOAD":
            loads.append(
                LoadSegment(
                    vaddr=seg["p_vaddr"],
                    memsz=seg["p_memsz"],
                    offset=seg["p_offset"],
                    filesz=seg["p_filesz"],
                    align=seg["p_align"],
                    executable=bool(seg["p_flags"] & PF_X),
                )
            )
        elif ptype == "PT_NOTE" and not build_id:
            for note in seg.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    build_id = note["n_desc"]
                    break
    debuglink = ""
    crc = 0
    has_symtab = False
    has_debug_info = False
    for sec in elf.iter_sections():
        name = sec.name
        if name == ".gnu_debuglink":
            data = sec.data()
            end = data.find(b"\0")
            debuglink = data[:end].decode("utf-8", "replace") if end > 0 else ""
            crc_at = (end + 4) & ~3
            if len(data) >= crc_at + 4:
                crc = struct.unpack_from("<I", data, crc_at)[0]
        elif name == ".symtab":
            has_symtab = True
        elif name == ".debug_info" or name == ".zdebug_info":
            has_debug_info = True
        elif not build_id and sec["sh_type"] == "SHT_NOTE":
            for note in sec.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    build_id = note["n_desc"]
                    break
    return ElfInfo(
        path=path,
        build_id=build_id if isinstance(build_id, str) else bytes(build_id).hex(),
        elf_type=str(elf["e_type"]),
        machine=str(elf["e_machine"]),
        loads=tuple(loads),
        debuglink=debuglink,
        debuglink_crc=crc,
        has_symtab=has_symtab,
        has_debug_info=has_debug_info,
    )
