"""Fuzz the section walker and compiler: garbage, truncation and mutation never crash, hang or mis-sort."""

from __future__ import annotations

import shutil
import struct
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetprof.nativeunwind.compiler import compile_frame_sections, compile_unwind_table
from fleetprof.nativeunwind.ehframe import FrameSection
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.table import MAX_PC, UW_CMD_FRAME_POINTER, UnwindTable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nativeunwind"
VADDR = 0x2000
CODE_LO, CODE_HI = 0x1000, 0x1800
FUZZ = settings(
    max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)


def cie(initial: bytes = bytes([0x0C, 7, 8, 0x90, 1]), aug: bytes = b"zR", enc: int = 0x1B) -> bytes:
    """A CIE record (eh_frame flavour) with code_align 1, data_align -8, RA column 16."""
    aug_data = bytes([1, enc]) if aug == b"zR" else b""
    body = struct.pack("<I", 0) + bytes([1]) + aug + b"\0" + bytes([1, 0x78, 16]) + aug_data + initial
    body += b"\0" * (-(len(body) + 4) % 8)
    return struct.pack("<I", len(body)) + body


def fde(offset: int, cie_offset: int, pc_begin: int, pc_range: int, program: bytes) -> bytes:
    """An FDE at section `offset` with a pcrel sdata4 pc_begin, pointing back to the CIE at `cie_offset`."""
    rel = pc_begin - (VADDR + offset + 8)
    body = struct.pack("<IiI", offset + 4 - cie_offset, rel, pc_range) + b"\0" + program
    body += b"\0" * (-(len(body) + 4) % 8)
    return struct.pack("<I", len(body)) + body


def eh_frame(functions: list[tuple[int, int, bytes]]) -> bytes:
    data = cie()
    for pc_begin, pc_range, program in functions:
        data += fde(len(data), 0, pc_begin, pc_range, program)
    return data + b"\0\0\0\0"


def check(table: UnwindTable, lo: int = CODE_LO, hi: int = CODE_HI) -> None:
    rows = table.iter_rows()
    pcs = [pc for pc, _ in rows]
    assert pcs == sorted(set(pcs))
    assert all(lo <= pc <= hi for pc in pcs)
    assert all(0 <= rule < len(table.rules) for _, rule in rows)
    assert all(a[1] != b[1] for a, b in pairwise(rows))
    if rows:
        assert table.rules[rows[-1][1]][0] == UW_CMD_FRAME_POINTER
    assert len(table.rows_bytes()) == 8 * len(rows)


def compile_bytes(data: bytes, is_eh: bool = True) -> UnwindTable | None:
    try:
        table = compile_frame_sections([FrameSection(".eh_frame", data, VADDR, is_eh)], CODE_LO, CODE_HI)
    except UnwindTableError:
        return None
    check(table)
    return table


_program = st.binary(max_size=40)
_function = st.tuples(st.integers(CODE_LO - 0x40, CODE_HI), st.integers(0, 0x200), _program)


@FUZZ
@given(st.lists(_function, max_size=12))
def test_synthetic_sections_with_random_programs(functions):
    table = compile_bytes(eh_frame(functions))
    assert table is not None
    inside = [f for f in functions if f[0] >= CODE_LO and f[1] and f[0] + f[1] <= CODE_HI]
    assert table.stats.fde_count == len(functions)
    assert bool(table.rows) == bool(inside)


@FUZZ
@given(st.binary(max_size=600), st.booleans())
def test_garbage_sections(data, is_eh):
    compile_bytes(data, is_eh)


@FUZZ
@given(st.data())
def test_mutated_real_eh_frame(data):
    real = eh_frame(
        [(0x1000 + 0x40 * k, 0x30, bytes([0x41, 0x0E, 16, 0x86, 2, 0x4A, 0x0E, 8])) for k in range(8)]
    )
    mutated = bytearray(real)
    for _ in range(data.draw(st.integers(1, 6))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(mutated)))
    compile_bytes(bytes(mutated[:cut]))


_uleb = st.integers(0, 1 << 20).map(
    lambda v: bytes(
        [
            (v >> (7 * k) & 0x7F) | (0x80 if v >> (7 * (k + 1)) else 0)
            for k in range(max(1, (v.bit_length() + 6) // 7))
        ]
    )
)
_cie_body = st.tuples(
    st.sampled_from([0, 1, 3, 4, 9]),
    st.one_of(st.sampled_from([b"", b"zR", b"zPLR", b"zRS", b"eh", b"zRB", b"zG"]), st.binary(max_size=4)),
    _uleb,
    _uleb,
    st.sampled_from([b"\x10", b"\x0f", b"\x80\x01"]),
    st.binary(max_size=10),
    st.binary(max_size=12),
)
_record = st.one_of(
    _cie_body.map(
        lambda t: bytes([t[0]]) + t[1] + b"\0" + t[2] + t[3] + t[4] + bytes([len(t[5])]) + t[5] + t[6]
    ),
    st.binary(max_size=30),
)


@FUZZ
@given(
    st.lists(st.tuples(st.sampled_from([0, 0xFFFFFFFF, 4, 8, 28]), _record), min_size=1, max_size=6),
    st.booleans(),
)
def test_structured_garbage(records, is_eh):
    """Records with plausible headers and random bodies reach the CIE/FDE parsers' deeper branches."""
    data = b""
    for ident, body in records:
        ident_bytes = struct.pack(
            "<I", ident if ident in (0, 0xFFFFFFFF) else len(data) + 4 - ident % (len(data) + 1)
        )
        data += struct.pack("<I", len(body) + 4) + ident_bytes + body
    compile_bytes(data, is_eh)


def test_absurd_lengths_and_pointers():
    for data in (
        struct.pack("<I", 0xFFFFFFF0) + b"\0" * 12,  # length past the end
        struct.pack("<IQ", 0xFFFFFFFF, 1 << 60) + b"\0" * 8,  # 64-bit length past the end
        cie() + struct.pack("<IIiI", 12, 0x7FFFFFFF, 0, 16),  # CIE pointer outside the section
        cie() + fde(24, 0, CODE_LO, 0xFFFFFFFF, b""),  # range past the code
        cie(aug=b"zX") + fde(24, 0, CODE_LO, 16, b""),  # unknown augmentation skipped by its length
        cie(aug=b"weird") + fde(24, 0, CODE_LO, 16, b""),  # unknown augmentation without 'z'
        cie(initial=b"\x0c") + fde(24, 0, CODE_LO, 16, b""),  # truncated CIE instructions
        struct.pack("<II", 10, 0) + b"\x01zRzRzR" + struct.pack("<IIiI", 12, 16, 0, 16),  # unterminated aug
    ):
        compile_bytes(data)
    table = compile_bytes(cie() + fde(24, 0, CODE_LO, 0xFFFFFFFF, b""))
    assert table is not None and table.stats.skipped_fdes == {"fde_outside_code": 1}


def test_dwarf64_records():
    """64-bit DWARF records (length escape 0xffffffff) in both .debug_frame and .eh_frame flavours."""
    initial = bytes([0x0C, 7, 8, 0x90, 1])
    program = bytes([0x41, 0x0E, 16])
    cie_body = struct.pack("<Q", (1 << 64) - 1) + b"\x01\x00\x01\x78\x10" + initial
    cie64 = struct.pack("<IQ", 0xFFFFFFFF, len(cie_body)) + cie_body
    fde_body = struct.pack("<QQQ", 0, CODE_LO, 0x20) + program
    debug = cie64 + struct.pack("<IQ", 0xFFFFFFFF, len(fde_body)) + fde_body
    table = compile_frame_sections([FrameSection(".debug_frame", debug, 0, False)], CODE_LO, CODE_HI)
    check(table)
    assert table.lookup(CODE_LO + 1)[2] == 16 and table.stats.fde_count == 1  # type: ignore[index]
    eh_cie_body = struct.pack("<Q", 0) + b"\x01zR\x00\x01\x78\x10\x01\x1b" + initial
    eh = struct.pack("<IQ", 0xFFFFFFFF, len(eh_cie_body)) + eh_cie_body
    fde_at = len(eh)
    rel = CODE_LO - (VADDR + fde_at + 20)
    eh_fde_body = struct.pack("<QiIB", fde_at + 12, rel, 0x20, 0) + program
    eh += struct.pack("<IQ", 0xFFFFFFFF, len(eh_fde_body)) + eh_fde_body
    table = compile_frame_sections([FrameSection(".eh_frame", eh, VADDR, True)], CODE_LO, CODE_HI)
    check(table)
    assert table.lookup(CODE_LO + 1)[2] == 16 and table.stats.fde_count == 1  # type: ignore[index]


def test_overlapping_fdes_are_truncated_not_mixed():
    prog = bytes([0x41, 0x0E, 16])
    table = compile_bytes(eh_frame([(0x1000, 0x100, prog), (0x1040, 0x20, prog)]))
    assert table is not None
    assert table.stats.skipped_fdes == {"fde_overlap_truncated": 1}
    assert table.lookup(0x1041)[2] == 16  # type: ignore[index]
    assert table.lookup(0x1060)[0] == UW_CMD_FRAME_POINTER  # type: ignore[index]


def test_code_above_4gib_is_refused():
    with pytest.raises(UnwindTableError, match="4 GiB"):
        compile_frame_sections([], 0, MAX_PC + 1)


@pytest.fixture(scope="module")
def small_elf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    out = tmp_path_factory.mktemp("fuzzelf") / "cases.so"
    subprocess.run(["gcc", "-shared", "-o", str(out), str(FIXTURES / "cfi_cases.s")], check=True)
    return out.read_bytes()


@settings(
    max_examples=60, derandomize=True, database=None, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(st.data())
def test_mutated_elf_files(small_elf, tmp_path_factory, data):
    """Header, program-header and section bytes overwritten: a table or UnwindTableError, nothing else."""
    blob = bytearray(small_elf)
    for _ in range(data.draw(st.integers(1, 4))):
        region = data.draw(st.sampled_from([(0, 64), (64, 64 + 56 * 10), (0, len(blob))]))
        pos = data.draw(st.integers(region[0], min(region[1], len(blob)) - 1))
        blob[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.getbasetemp() / "mutated.so"
    path.write_bytes(bytes(blob[: data.draw(st.integers(16, len(blob)))]))
    try:
        table = compile_unwind_table(str(path), find_debug=False)
    except UnwindTableError as exc:
        assert "\n" not in str(exc)
        return
    check(table, 0, MAX_PC)
