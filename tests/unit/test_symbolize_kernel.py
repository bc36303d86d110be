"""Kernel symbols from kallsyms text: sorting, modules, region ends, hidden addresses, the real file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fleetprof.profile.model import FrameKind
from fleetprof.symbolize import KernelSymbols, kernel_model_frame

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000100 T do_syscall_64
ffffffff81000040 t early_helper
ffffffff81000200 D some_data
ffffffff81000300 W weak_func
ffffffff81000400 T _etext
ffffffff82000000 T _sinittext
ffffffff82000010 t init_thing
ffffffff82000100 T _einittext
ffffffffc0001000 t ext4_read\t[ext4]
ffffffffc0001100 T ext4_write\t[ext4]
ffffffffc0100000 t xfs_sync\t[xfs]
ffffffffc0200000 t bpf_prog_deadbeef_handler\t[bpf]
"""
MODULES = """\
ext4 8192 1 - Live 0xffffffffc0001000
xfs 4096 0 - Live 0xffffffffc0100000
"""


@pytest.fixture
def table() -> KernelSymbols:
    return KernelSymbols(KALLSYMS, MODULES)


def test_core_symbols_and_offsets(table):
    assert table.available and table.count == 13
    sym = table.lookup(0xFFFFFFFF81000108)
    assert (sym.name, sym.module, sym.offset) == ("do_syscall_64", "", 8)
    assert table.lookup(0xFFFFFFFF81000050).name == "early_helper"  # unsorted input
    assert table.lookup(0xFFFFFFFF81000250).name == "do_syscall_64"  # data symbols are not functions
    assert table.lookup(0xFFFFFFFF81000350).name == "weak_func"
    assert table.lookup(0xFFFFFFFF82000020).name == "init_thing"


def test_gap_after_core_text_is_unknown(table):
    assert table.lookup(0xFFFFFFFF81000500) is None
    assert table.lookup(0xFFFFFFFF82000200) is None
    assert table.name(0xFFFFFFFF81000500) == "[kernel]+0xffffffff81000500"
    assert table.lookup(0xFFFFFFFF80000000) is None


def test_modules_bounded_by_proc_modules(table):
    sym = table.lookup(0xFFFFFFFFC0001104)
    assert (sym.name, sym.module, sym.offset) == ("ext4_write", "ext4", 4)
    assert table.lookup(0xFFFFFFFFC0002FFF).name == "ext4_write"
    assert table.lookup(0xFFFFFFFFC0003000) is None  # past the end of ext4's 8 KiB
    assert table.name(0xFFFFFFFFC0100FF0) == "xfs_sync"
    assert table.name(0xFFFFFFFFC0101010) == "[kernel]+0xffffffffc0101010"
    assert table.lookup(0xFFFFFFFFC0200010).module == "bpf"


def test_module_without_modules_file_is_capped():
    table = KernelSymbols(KALLSYMS)
    assert table.lookup(0xFFFFFFFFC00FF000).name == "ext4_write"  # up to the next symbol
    assert table.lookup(0xFFFFFFFFC0200000 + (1 << 20) + 5) is None  # the last one is capped


def test_hidden_addresses_are_reported():
    hidden = re.sub(r"^[0-9a-f]+", "0000000000000000", KALLSYMS, flags=re.M)
    table = KernelSymbols(hidden)
    assert not table.available
    assert "zero addresses" in table.reason and "root" in table.reason
    assert table.lookup(0xFFFFFFFF81000108) is None
    assert table.name(0xFFFFFFFF81000108) == "[kernel]+0xffffffff81000108"


def test_unreadable_file(tmp_path):
    table = KernelSymbols.load(str(tmp_path / "missing"), str(tmp_path / "missing2"))
    assert not table.available and "unavailable" in table.reason


def test_model_frame(table):
    frame = kernel_model_frame(table, 0xFFFFFFFF81000108)
    assert frame.kind is FrameKind.KERNEL and frame.folded_name() == "do_syscall_64_[k]"


def test_real_kallsyms():
    if not Path("/proc/kallsyms").exists():
        pytest.skip("no /proc/kallsyms")
    table = KernelSymbols.load()
    if not table.available:
        pytest.skip(table.reason)
    text = Path("/proc/kallsyms").read_text()
    third = text.index("\n", len(text) // 3) + 1  # a whole line: a cut address would name another symbol
    match = re.search(r"^([0-9a-f]+) [tT] (\w+)$", text[third:], re.M)
    addr, name = int(match.group(1), 16), match.group(2)
    found = table.lookup(addr)
    assert found is not None and found.offset == 0
    assert table.lookup(addr).name == name or text.count(f"{match.group(1)} ") > 1  # aliases share addresses
