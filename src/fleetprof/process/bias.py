"""Load bias of a mapping: runtime address minus ELF virtual address, from the PT_LOAD it maps.

The kernel maps a segment from `page_down(p_offset)` at `page_down(p_vaddr + bias)`, so an executable
mapping's file offset can fall before its segment's `p_offset` and inside the previous segment's file
range (lld and Rust binaries: `p_offset != p_vaddr` and not page aligned). Segments are therefore
matched on page-rounded ranges, preferring one whose executable flag matches the mapping's.
"""

from __future__ import annotations

import mmap

from fleetprof.elf.reader import ElfError, ElfInfo, LoadSegment, read_elf_info
from fleetprof.process.maps import MapsEntry

PAGE_SIZE = mmap.PAGESIZE


def _page_down(value: int, page: int) -> int:
    return value - value % page


def segment_for_mapping(
    info: ElfInfo, offset: int, executable: bool = True, page: int = PAGE_SIZE
) -> LoadSegment | None:
    """The PT_LOAD a mapping at file `offset` comes from, or None when no segment's pages hold it."""
    best: LoadSegment | None = None
    best_rank = (-1, -1, -1)
    for seg in info.loads:
        low = _page_down(seg.offset, page)
        high = max(seg.offset + seg.filesz, low + 1)
        if not low <= offset < high:
            continue
        rank = (int(seg.executable == executable), int(seg.offset <= offset), seg.offset)
        if rank > best_rank:
            best, best_rank = seg, rank
    return best


def load_bias(
    info: ElfInfo, start: int, offset: int, executable: bool = True, page: int = PAGE_SIZE
) -> int | None:
    """Runtime address - ELF vaddr for a mapping at (`start`, file `offset`); None if no segment fits."""
    seg = segment_for_mapping(info, offset, executable, page)
    if seg is None:
        return None
    return start - (seg.vaddr + (offset - seg.offset))


def covered_by_text(info: ElfInfo, offset: int, length: int, page: int = PAGE_SIZE) -> bool:
    """Whether file range [offset, offset+length) lies in the pages of one executable PT_LOAD."""
    for seg in info.loads:
        if not seg.executable:
            continue
        low = _page_down(seg.offset, page)
        high = seg.offset + seg.filesz
        high += -high % page
        if low <= offset and offset + length <= high:
            return True
    return False


def file_bias(path: str, mappings: list[MapsEntry]) -> int | None:
    """Load bias of ELF `path` from the first of its mappings that a PT_LOAD explains (None: unreadable
    file, or no mapping it explains)."""
    try:
        info = read_elf_info(path)
    except ElfError:
        return None
    for mapping in mappings:
        bias = load_bias(info, mapping.start, mapping.offset)
        if bias is not None:
            return bias
    return None
