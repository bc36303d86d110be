"""The narrow decl_line scanner against pyelftools (the oracle) on DWARF 4, 5 and compressed builds."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from fleetprof.symbolize.dwarfscan import DwarfSections
from fleetprof.symbolize.startline import StartLines

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(not h.have("g++"), reason="needs g++")


@pytest.fixture(scope="module", params=["-gdwarf-4", "-gdwarf-5", "-gz", "clang"])
def binary(request, tmp_path_factory):
    """g++ builds, plus clang++ (no DW_AT_sibling, no .debug_aranges: the slow paths)."""
    out = tmp_path_factory.mktemp("dwarf") / "cxxprog"
    if request.param == "clang":
        if not h.have("clang++"):
            pytest.skip("no clang++")
        h.run("clang++", "-O2", "-g", "-o", out, h.FIXTURES / "prog.cpp")
    else:
        h.run("g++", "-O2", "-g", request.param, "-o", out, h.FIXTURES / "prog.cpp")
    return out


def oracle(path: Path) -> dict[int, int]:
    """low_pc -> decl_line of every concrete subprogram, following abstract_origin/specification."""
    found = {}
    with open(path, "rb") as stream:
        dwarf = ELFFile(stream).get_dwarf_info()
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                if die.tag != "DW_TAG_subprogram" or "DW_AT_low_pc" not in die.attributes:
                    continue
                node, line = die, 0
                for _ in range(4):
                    line = (
                        node.attributes.get("DW_AT_decl_line").value
                        if "DW_AT_decl_line" in node.attributes
                        else 0
                    )
                    if line:
                        break
                    ref = next(
                        (a for a in ("DW_AT_abstract_origin", "DW_AT_specification") if a in node.attributes),
                        None,
                    )
                    if ref is None:
                        break
                    node = node.get_DIE_from_attribute(ref)
                if line:
                    found[die.attributes["DW_AT_low_pc"].value] = line
    return found


def test_scanner_agrees_with_pyelftools(binary):
    expected = oracle(binary)
    assert len(expected) >= 5
    lines = StartLines(str(binary))
    for low, line in expected.items():
        assert lines.start_line(low, "", low) == line, hex(low)
    assert not lines.failure
    lines.close()


def test_units_and_aranges(binary):
    sections = DwarfSections(str(binary))
    units = sections.units()
    assert units and all(u.end > u.die_offset for u in units)
    ranges = sections.aranges() or [r for u in units for r in u.ranges]
    assert any(start < end for start, end, *_ in ranges)
    sections.close()


@pytest.mark.parametrize("cut", [200, 2000])
def test_garbage_gives_zero_not_errors(binary, tmp_path, cut):
    data = bytearray(binary.read_bytes())
    with open(binary, "rb") as stream:
        sec = ELFFile(stream).get_section_by_name(".debug_info")
        off, size = sec["sh_offset"], sec["sh_size"]
    for i in range(cut, size, 7):
        data[off + i] = (data[off + i] * 13 + 5) & 0xFF
    broken = tmp_path / "broken"
    broken.write_bytes(bytes(data))
    lines = StartLines(str(broken))
    for low in oracle(binary):
        assert isinstance(lines.start_line(low, "main", low), int)
    lines.close()


def test_missing_or_non_elf_file(tmp_path):
    (tmp_path / "x").write_bytes(b"not an elf")
    for path in (tmp_path / "x", tmp_path / "absent"):
        lines = StartLines(str(path))
        assert lines.start_line(0x1000, "main", 0x1000) == 0
        assert lines.failure
