"""Load bias from program headers, including layouts where start - offset is wrong."""

from __future__ import annotations

from fleetprof.elf.reader import ElfInfo, LoadSegment
from fleetprof.process.bias import covered_by_text, load_bias, segment_for_mapping


def _elf(*loads: tuple[int, int, int, bool]) -> ElfInfo:
    return ElfInfo(
        path="x",
        build_id="",
        elf_type="ET_DYN",
        machine="EM_X86_64",
        loads=tuple(
            LoadSegment(vaddr=v, memsz=size, offset=o, filesz=size, align=0x1000, executable=x)
            for o, v, size, x in loads
        ),
        debuglink="",
        debuglink_crc=0,
        has_symtab=False,
        has_debug_info=False,
    )


# GNU ld -z separate-code: segments page aligned, vaddr == offset.
GNU = _elf((0, 0, 0x428, False), (0x1000, 0x1000, 0x119, True), (0x2000, 0x2000, 0xA4, False))
# lld / rustc: text at p_offset 0x699a00, p_vaddr 0x69aa00 (ruff's own layout); the mapping of the
# text starts at file offset 0x699000, which is inside the read-only segment's file range too.
LLD = _elf(
    (0, 0, 0x6999FC, False), (0x699A00, 0x69AA00, 0x1047990, True), (0x16E1390, 0x16E3390, 0x81A50, False)
)
# Non-PIE executable linked at 0x400000.
EXEC = _elf((0, 0x400000, 0x1000, False), (0x1000, 0x401000, 0x5000, True))


def test_page_aligned_layout():
    assert load_bias(GNU, 0x7F0000001000, 0x1000) == 0x7F0000000000
    assert segment_for_mapping(GNU, 0x1000).executable


def test_unaligned_text_segment_is_matched_by_page():
    start = 0x5571957F6000 + 0x69A000  # where the kernel maps page_down(p_vaddr) + bias
    assert load_bias(LLD, start, 0x699000) == 0x5571957F6000
    assert start - 0x699000 != 0x5571957F6000  # the naive start - offset is a page off


def test_read_only_mapping_prefers_read_only_segment():
    assert segment_for_mapping(LLD, 0, executable=False).offset == 0
    assert load_bias(LLD, 0x1000, 0, executable=False) == 0x1000


def test_non_pie_bias_is_zero():
    assert load_bias(EXEC, 0x401000, 0x1000) == 0


def test_offset_outside_every_segment():
    assert load_bias(GNU, 0x1000, 0x100000) is None


def test_covered_by_text():
    assert covered_by_text(GNU, 0x1000, 0x1000)
    assert not covered_by_text(GNU, 0x1000, 0x2000)
    assert not covered_by_text(GNU, 0x2000, 0x1000)
    assert covered_by_text(LLD, 0x699000, 0x100000)
