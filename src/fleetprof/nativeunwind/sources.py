"""Find a file's CFI sections: `.eh_frame` (by section or via PT_GNU_EH_FRAME) and `.debug_frame`.

ELF problems surface as UnwindTableError, the compiler's one exception.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

from fleetprof.elf.view import EM_X86_64, PT_GNU_EH_FRAME, SHT_NOBITS, ElfError, ElfView
from fleetprof.nativeunwind.ehframe import DW_EH_PE_omit, FrameError, FrameSection, read_encoded
from fleetprof.nativeunwind.errors import UnwindTableError

EH_FRAME_HDR_VERSION = 1
TABLE_DATAREL_SDATA4 = 0x3B
_U32 = struct.Struct("<I")


@contextmanager
def open_elf(path: str) -> Iterator[ElfView]:
    """An x86-64 ELF64 little-endian file opened for tabling; ELF errors become UnwindTableError."""
    try:
        with ElfView(path) as elf:
            if elf.elf_class != 64 or not elf.little_endian:
                raise UnwindTableError(f"{path}: not a 64-bit little-endian ELF file")
            if elf.machine != EM_X86_64:
                raise UnwindTableError(f"{path}: machine {elf.machine} is not x86-64")
            yield elf
    except ElfError as exc:
        raise UnwindTableError(str(exc), transient=exc.transient) from None


def eh_frame_section(elf: ElfView) -> FrameSection | None:
    """The `.eh_frame` bytes from its section header, or via `.eh_frame_hdr` when headers are stripped."""
    try:
        return _eh_frame_section(elf)
    except ElfError as exc:
        raise UnwindTableError(str(exc)) from None


def _eh_frame_section(elf: ElfView) -> FrameSection | None:
    sec = elf.sections.get(".eh_frame")
    if sec is not None and sec.type != SHT_NOBITS and sec.size:
        data = elf.section_data(".eh_frame")
        if data:
            return FrameSection(".eh_frame", data, sec.addr, True)
    seg = elf.segment(PT_GNU_EH_FRAME)
    if seg is None or not seg.filesz:
        return None
    return _eh_frame_from_hdr(
        elf, elf.read(seg.offset, min(seg.filesz, max(elf.size - seg.offset, 0))), seg.vaddr
    )


def _eh_frame_from_hdr(elf: ElfView, hdr: bytes, hdr_vaddr: int) -> FrameSection:
    """Locate `.eh_frame` from `.eh_frame_hdr`; its end is the last FDE the search table lists."""
    if len(hdr) < 8 or hdr[0] != EH_FRAME_HDR_VERSION:
        raise UnwindTableError(
            f"{elf.path}: unsupported .eh_frame_hdr (version {hdr[:1].hex() or 'missing'})"
        )
    ptr_enc, count_enc, table_enc = hdr[1], hdr[2], hdr[3]
    try:
        eh_vaddr, i = read_encoded(hdr, 4, ptr_enc, hdr_vaddr, hdr_vaddr)
        count, i = (
            read_encoded(hdr, i, count_enc, hdr_vaddr, hdr_vaddr) if count_enc != DW_EH_PE_omit else (0, i)
        )
    except (FrameError, IndexError) as exc:
        raise UnwindTableError(f"{elf.path}: corrupt .eh_frame_hdr ({exc or 'truncated'})") from None
    extent = elf.vaddr_extent(eh_vaddr)
    if extent is None:
        raise UnwindTableError(
            f"{elf.path}: .eh_frame_hdr points at {eh_vaddr:#x}, outside the file's segments"
        )
    offset, avail = extent
    if table_enc == TABLE_DATAREL_SDATA4 and count > 0 and i + count * 8 <= len(hdr):
        last_fde = hdr_vaddr + max(struct.unpack_from(f"<{count * 2}i", hdr, i)[1::2])
        last_off = last_fde - eh_vaddr
        if 0 <= last_off <= avail - 4:
            length = _U32.unpack_from(elf.read(offset + last_off, 4))[0]
            if length != 0xFFFFFFFF and last_off + 4 + length <= avail:
                avail = last_off + 4 + length
    return FrameSection(".eh_frame (via PT_GNU_EH_FRAME)", elf.read(offset, avail), eh_vaddr, True)


def debug_frame_section(elf: ElfView, label: str = ".debug_frame") -> FrameSection | None:
    """The `.debug_frame` (or `.zdebug_frame`) bytes; its pointers are absolute addresses."""
    for name in (".debug_frame", ".zdebug_frame"):
        try:
            data = elf.section_data(name)
        except ElfError as exc:
            raise UnwindTableError(str(exc)) from None
        if data:
            return FrameSection(label, data, 0, False)
    return None
