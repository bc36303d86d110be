"""Compile real ELF files built with gcc in many shapes and check the tables against readelf -wF."""

from __future__ import annotations

import shutil
import struct
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from fleetprof.nativeunwind.compiler import compile_unwind_table
from fleetprof.nativeunwind.crosscheck import OracleRow, crosscheck, expected_rule, parse_readelf, run_readelf
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.table import (
    SIGNAL_RULE,
    STOP_RULE,
    UW_CFA_PLT,
    UW_CFA_RBP_DEREF,
    UW_CFA_RBX,
    UW_CFA_REG,
    UW_CFA_RSP,
    UW_CFA_RSP_DEREF,
    UW_CMD_FRAME_POINTER,
    UW_CMD_INVALID,
    UW_RBP_AT_CFA,
    UW_RBP_AT_RBP,
    UW_RBP_SAME,
    UW_RBP_UNDEFINED,
    UW_RBX_LOST,
    Rule,
    UnwindTable,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nativeunwind"
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"

pytestmark = pytest.mark.skipif(
    not all(shutil.which(tool) for tool in ("gcc", "g++", "readelf", "objcopy", "strip", "nm")),
    reason="needs gcc, g++ and binutils",
)


def run(*cmd: str | Path) -> None:
    subprocess.run([str(c) for c in cmd], check=True, capture_output=True)


def symbols(path: Path | str) -> dict[str, tuple[int, int]]:
    """name -> (address, size) of defined symbols, from nm (symtab, else dynsym)."""
    out: dict[str, tuple[int, int]] = {}
    for flag in ("-S", "-DS"):
        proc = subprocess.run(["nm", flag, "--defined-only", str(path)], capture_output=True, text=True)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) in (3, 4):
                size = int(parts[1], 16) if len(parts) == 4 else 0
                out.setdefault(parts[-1].split("@")[0], (int(parts[0], 16), size))
    return out


def zero_section_headers(src: Path, dst: Path) -> None:
    """Copy `src` with e_shoff, e_shnum and e_shstrndx zeroed: only program headers remain."""
    data = bytearray(src.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<HHH", data, 0x3A, 0, 0, 0)
    dst.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every binary shape the tests use, built once per module run."""
    d = tmp_path_factory.mktemp("nativeunwind")
    chain = FIXTURES / "chain.c"
    b = {name: d / name for name in (
        "omit", "fp", "nopie", "static", "stripped", "realign", "debugframe", "split", "hdr_only", "cxx",
        "cases.so", "noeh", "high.so",
    )}  # fmt: skip
    run("gcc", "-O2", "-fomit-frame-pointer", "-o", b["omit"], chain)
    run("gcc", "-O2", "-fno-omit-frame-pointer", "-o", b["fp"], chain)
    run("gcc", "-O2", "-no-pie", "-o", b["nopie"], chain)
    run("gcc", "-O2", "-static", "-pthread", "-o", b["static"], FIXTURES / "threads.c")
    run("strip", "-o", b["stripped"], b["omit"])
    run("gcc", "-O2", "-mavx", "-o", b["realign"], FIXTURES / "realign.c")
    run("gcc", "-O2", "-g", "-fno-asynchronous-unwind-tables", "-o", b["debugframe"], chain)
    run("objcopy", "--only-keep-debug", b["debugframe"], d / "split.debug")
    run(
        "objcopy",
        "--strip-debug",
        "--add-gnu-debuglink=" + str(d / "split.debug"),
        b["debugframe"],
        b["split"],
    )
    zero_section_headers(b["omit"], b["hdr_only"])
    run("g++", "-O2", "-o", b["cxx"], FIXTURES / "throw.cc")
    run("gcc", "-shared", "-o", b["cases.so"], FIXTURES / "cfi_cases.s")
    run("objcopy", "--remove-section", ".eh_frame", "--remove-section", ".eh_frame_hdr", b["omit"], b["noeh"])
    run("gcc", "-shared", "-Wl,-Ttext-segment=0x100000000", "-o", b["high.so"], FIXTURES / "cfi_cases.s")
    return b


def assert_matches_readelf(table: UnwindTable, path: Path | str) -> int:
    result = crosscheck(table, parse_readelf(run_readelf(str(path))))
    assert result.mismatches == []
    assert result.compared > 0
    return result.compared


def assert_well_formed(table: UnwindTable) -> None:
    rows = table.iter_rows()
    pcs = [pc for pc, _ in rows]
    assert pcs == sorted(set(pcs)), "rows strictly increasing"
    assert all(a[1] != b[1] for a, b in pairwise(rows)), "equal neighbours merged"
    assert table.rules[rows[-1][1]][0] == UW_CMD_FRAME_POINTER, "a final frame-pointer row ends the table"
    assert len(set(table.rules)) == len(table.rules), "rules deduplicated"


@pytest.mark.parametrize(
    "name", ["omit", "fp", "nopie", "static", "realign", "debugframe", "cxx", "cases.so"]
)
def test_rows_match_readelf(built, name):
    table = compile_unwind_table(str(built[name]))
    assert_well_formed(table)
    assert_matches_readelf(table, built[name])


def test_call_chain_functions_are_covered(built):
    table = compile_unwind_table(str(built["omit"]))
    syms = symbols(built["omit"])
    for fn in ("main", "level1", "level2", "level3", "leaf"):
        addr, size = syms[fn]
        for pc in range(addr, addr + size):
            rule = table.lookup(pc)
            assert rule is not None and rule[0] == UW_CFA_RSP, (fn, hex(pc), rule)
    assert table.stats.sources == [".eh_frame"]
    frames = subprocess.run(
        ["readelf", "--debug-dump=frames", str(built["omit"])], capture_output=True, text=True, check=True
    ).stdout
    assert table.stats.fde_count == frames.count(" FDE cie=")
    assert table.bytes_per_fde == table.table_bytes / table.stats.fde_count


def test_frame_pointer_build_uses_rbp(built):
    table = compile_unwind_table(str(built["fp"]))
    addr, size = symbols(built["fp"])["level2"]
    kinds = {table.lookup(pc)[:2] for pc in range(addr, addr + size)}  # type: ignore[index]
    assert (1, UW_RBP_AT_CFA) in kinds  # UW_CFA_RBP with the caller's rbp saved at CFA-16


def test_start_is_outermost(built):
    for name in ("omit", "nopie", "static", "cxx"):
        table = compile_unwind_table(str(built[name]))
        addr, _ = symbols(built[name])["_start"]
        assert table.lookup(addr) == STOP_RULE, name


def test_plt_rows(built):
    table = compile_unwind_table(str(built["omit"]))
    text = subprocess.run(["readelf", "-SW", str(built["omit"])], capture_output=True, text=True).stdout
    plt = next(line.split() for line in text.splitlines() if " .plt " in line)
    start = int(plt[plt.index(".plt") + 2], 16)
    size = int(plt[plt.index(".plt") + 4], 16)
    rules = {table.lookup(pc) for pc in range(start + 16, start + size)}
    assert rules == {(UW_CFA_PLT, UW_RBP_SAME, 8, 11, 0, 0)}
    assert table.lookup(start) == (UW_CFA_RSP, UW_RBP_SAME, 16, 0, 0, 0)  # the PLT0 push


@pytest.mark.skipif(not Path(LIBC).exists(), reason="needs the system glibc")
def test_libc_signal_trampoline_and_thread_entry_points():
    table = compile_unwind_table(LIBC)
    assert_well_formed(table)
    fdes = [row for row in parse_readelf(run_readelf(LIBC)) if row.signal]
    assert fdes, "libc has a signal-frame CIE ('S' augmentation) for __restore_rt"
    for row in fdes:
        assert table.lookup(row.pc) == SIGNAL_RULE
        assert table.lookup(row.end - 1) == SIGNAL_RULE
        assert table.lookup(row.end) == SIGNAL_RULE, "inside rt_sigreturn: the byte after the syscall"
    stops = [pc for pc, r in table.iter_rows() if table.rules[r] == STOP_RULE]
    clone = symbols(LIBC)["clone"]
    assert any(clone[0] <= pc < clone[0] + clone[1] for pc in stops), "clone's child path is outermost"
    assert len(stops) >= 2, "clone and clone3 mark the thread entry outermost"


def test_static_binary_signal_and_thread_entry(built):
    table = compile_unwind_table(str(built["static"]))
    syms = symbols(built["static"])
    assert table.lookup(syms["__restore_rt"][0]) == SIGNAL_RULE
    assert table.lookup(syms["__restore_rt"][0] - 1) == SIGNAL_RULE, "the FDE starts one byte early"
    for fn in ("clone", "clone3"):
        addr, size = syms[fn]
        assert STOP_RULE in {table.lookup(pc) for pc in range(addr, addr + size)}, fn
    addr, size = syms["start_thread"]
    assert all(table.lookup(pc)[0] == UW_CFA_RSP for pc in range(addr, addr + size))  # type: ignore[index]


def test_stripped_binary_has_the_same_table(built):
    full = compile_unwind_table(str(built["omit"]))
    stripped = compile_unwind_table(str(built["stripped"]))
    assert stripped.rows == full.rows and stripped.rules == full.rules


def test_eh_frame_hdr_when_section_headers_are_gone(built):
    full = compile_unwind_table(str(built["omit"]))
    hdr = compile_unwind_table(str(built["hdr_only"]))
    assert hdr.stats.sources == [".eh_frame (via PT_GNU_EH_FRAME)"]
    assert hdr.rows == full.rows and hdr.rules == full.rules


def test_corrupt_eh_frame_hdr_is_a_clear_error(built, tmp_path):
    data = bytearray(built["hdr_only"].read_bytes())
    phoff, phentsize, phnum = struct.unpack_from("<Q", data, 0x20)[0], *struct.unpack_from("<HH", data, 0x36)
    for k in range(phnum):
        ptype, _, offset = struct.unpack_from("<IIQ", data, phoff + k * phentsize)
        if ptype == 0x6474E550:  # PT_GNU_EH_FRAME
            data[offset] = 7  # version
    bad = tmp_path / "bad_hdr"
    bad.write_bytes(bytes(data))
    with pytest.raises(UnwindTableError, match=r"unsupported \.eh_frame_hdr"):
        compile_unwind_table(str(bad), find_debug=False)


def test_stack_realignment(built):
    table = compile_unwind_table(str(built["realign"]))
    syms = symbols(built["realign"])
    addr, size = syms["drap"]
    rules = [table.lookup(pc) for pc in range(addr, addr + size)]
    deref = [r for r in rules if r and r[0] == UW_CFA_RBP_DEREF]
    assert deref and all(r[2] < 0 and r[3] == 0 for r in deref), "CFA = *(rbp + off) once the DRAP is saved"
    assert all(r[1] == UW_RBP_AT_RBP and r[4] == 0 for r in deref), "rbp saved at [rbp] (DW_CFA_expression)"
    drap_windows = [r for r in rules if r and r[0] == UW_CFA_REG]
    assert drap_windows, "the DRAP prologue and epilogue: CFA = r10 + 0"
    assert {(r[2], r[3]) for r in drap_windows} == {(0, 10)}
    assert not any(r and r[0] == UW_CMD_INVALID for r in rules)
    assert "cfa_register_r10" not in table.stats.invalid
    addr, size = syms["fp_realign"]
    assert {table.lookup(pc)[0] for pc in range(addr, addr + size)} == {0, 1}  # type: ignore[index]


def test_hand_written_cases(built):
    path = built["cases.so"]
    table = compile_unwind_table(str(path))
    syms = symbols(path)

    def at(fn: str, off: int = 0) -> Rule | None:
        return table.lookup(syms[fn][0] + off)

    assert at("sig_trampoline") == SIGNAL_RULE
    assert at("outermost") == STOP_RULE
    assert at("cfa_in_r10", 5) == (UW_CFA_REG, UW_RBP_SAME, 0, 10, 0, 0)  # leaf only: r10 is caller-saved
    assert at("cfa_in_r10", 0x1B - 0x08) == (UW_CFA_RBP_DEREF, UW_RBP_AT_RBP, -8, 0, 0, 0)
    assert at("deref_plus", 4) == (UW_CFA_RSP_DEREF, UW_RBP_SAME, 16, 8, 0, 0)
    assert at("states", 5) == (1, UW_RBP_AT_CFA, 16, 0, -16, 0)  # rbp+16 after mov %rsp,%rbp
    assert at("states", 0x138 - 0x12E) == (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, 0)  # after .cfi_restore rbp
    assert at("states", 0x139 - 0x12E) == (1, UW_RBP_AT_CFA, 16, 0, -16, 0)  # .cfi_restore_state
    assert at("ra_elsewhere", 4)[0] == UW_CMD_INVALID  # type: ignore[index]
    assert at("args_size", 4) == (UW_CFA_RSP, UW_RBP_UNDEFINED, 16, 0, 0, -16)  # val_offset rbp; rbx saved
    assert table.stats.invalid["ra_in_register"] >= 1
    assert at("cfa_in_rbx") == (UW_CFA_RSP, UW_RBP_SAME, 24, 0, 0, 0)  # two words pushed by the PLT
    assert at("cfa_in_rbx", 1) == (UW_CFA_RSP, UW_RBP_SAME, 32, 0, 0, -32)  # push %rbx
    assert at("cfa_in_rbx", 4) == at("cfa_in_rbx", 11) == (UW_CFA_RBX, UW_RBP_SAME, 32, 0, 0, -32)
    assert at("cfa_in_rbx", 12) == (UW_CFA_RSP, UW_RBP_SAME, 32, 0, 0, -32)
    assert at("cfa_in_rbx", 20) == (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, 0)  # .cfi_restore rbx


def test_debug_frame_only_objects(built):
    table = compile_unwind_table(str(built["debugframe"]))
    assert table.stats.sources == [".eh_frame", ".debug_frame"]
    addr, size = symbols(built["debugframe"])["level2"]
    assert all(table.lookup(pc)[0] == UW_CFA_RSP for pc in range(addr, addr + size))  # type: ignore[index]


def test_separate_debug_file(built):
    whole = compile_unwind_table(str(built["debugframe"]))
    bare = compile_unwind_table(str(built["split"]), find_debug=False)
    addr, _ = symbols(built["debugframe"])["level2"]
    assert bare.lookup(addr) is None or bare.lookup(addr)[0] in (UW_CMD_INVALID, UW_CMD_FRAME_POINTER)  # type: ignore[index]
    explicit = compile_unwind_table(str(built["split"]), str(built["split"]) + ".debug")
    found = compile_unwind_table(str(built["split"]))  # via .gnu_debuglink, CRC checked
    for table in (explicit, found):
        assert table.rows == whole.rows and table.rules == whole.rules
        assert table.stats.sources[-1].endswith("split.debug:.debug_frame")


@pytest.mark.parametrize(
    ("name", "message"),
    [("noeh", "no .eh_frame or .debug_frame"), ("high.so", "above 4 GiB")],
)
def test_whole_file_failures(built, name, message):
    with pytest.raises(UnwindTableError, match=message):
        compile_unwind_table(str(built[name]), find_debug=False)


def test_not_elf_and_relocatable_and_missing(tmp_path):
    text = tmp_path / "text"
    text.write_text("hello, this is not an ELF file at all, just text padding\n" * 3)
    with pytest.raises(UnwindTableError, match="not an ELF file"):
        compile_unwind_table(str(text))
    obj = tmp_path / "chain.o"
    run("gcc", "-O2", "-c", "-o", obj, FIXTURES / "chain.c")
    with pytest.raises(UnwindTableError, match="relocatable"):
        compile_unwind_table(str(obj))
    with pytest.raises(UnwindTableError, match="cannot open"):
        compile_unwind_table(str(tmp_path / "missing"))
    short = tmp_path / "short"
    short.write_bytes(b"\x7fELF")
    with pytest.raises(UnwindTableError, match="too short"):
        compile_unwind_table(str(short))


def test_rows_bytes_layout(built):
    table = compile_unwind_table(str(built["omit"]))
    raw = table.rows_bytes()
    assert len(raw) == 8 * table.row_count
    pc0, rule0 = struct.unpack_from("<II", raw, 0)
    assert (pc0, rule0) == table.iter_rows()[0]
    rules = table.rules_bytes()
    assert len(rules) == 16 * len(table.rules)
    assert struct.unpack_from("<BBHiii", rules, 0)[0] == UW_CMD_INVALID


@pytest.mark.parametrize(
    ("cfa", "rbp", "rbx", "want"),
    [
        ("rbx+56", "u", "c-56", (UW_CFA_RBX, UW_RBP_SAME, 56, 0, 0, -56)),
        ("r10+0", "u", "u", (UW_CFA_REG, UW_RBP_SAME, 0, 10, 0, 0)),
        ("rax+8", "c-16", "s", (UW_CFA_REG, UW_RBP_AT_CFA, 8, 0, -16, 0)),
        ("rsp+16", "u", "r12 (r12)", (UW_CFA_RSP, UW_RBP_SAME, 16, 0, 0, UW_RBX_LOST)),
        ("rsp+16", "u", "exp", (UW_CFA_RSP, UW_RBP_SAME, 16, 0, 0, UW_RBX_LOST)),
        ("r10+0", "exp", "u", None),  # readelf doesn't print the rbp expression
    ],
)
def test_crosscheck_expects_register_rules(cfa, rbp, rbx, want):
    assert expected_rule(OracleRow(".eh_frame", 0, 1, cfa, rbp, "c-8", False, rbx)) == want
