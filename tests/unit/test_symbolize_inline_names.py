"""Inlined C++ frames carry their namespaces and classes, also where GCC gives no DW_AT_linkage_name.

The fixture marks each inlined function's one-line body with its qualified name; every inlined frame
of `driver` is checked against that marker and against llvm-symbolizer on the same binary.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import NativeFile, NativeSymbolizer
from fleetprof.symbolize.dwarfscan import DwarfSections

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

SOURCE = h.FIXTURES / "inline_names.cpp"
MARKERS = {
    number: match.group(1)
    for number, text in enumerate(SOURCE.read_text().splitlines(), start=1)
    if (match := re.search(r"// NAME:(.+)$", text))
}
COMPILERS = ["g++", "clang++"]


@pytest.fixture(scope="module", params=COMPILERS)
def binary(request, tmp_path_factory) -> Path:
    if not h.have(request.param, "nm", "llvm-symbolizer"):
        pytest.skip(f"{request.param}, nm or llvm-symbolizer is not installed")
    out = tmp_path_factory.mktemp("inline_names") / f"prog-{request.param}"
    h.run(request.param, "-g", "-O2", "-Wl,--build-id", "-o", out, SOURCE)
    return out


def driver_frames(path: Path, **options) -> tuple[NativeSymbolizer, dict[int, tuple]]:
    """Frames of every byte address of `driver`, outermost first."""
    [(start, size)] = [(s, n) for s, n, name in h.nm_functions(path) if name == "driver(int)"]
    info = read_elf_info(path)
    sym = NativeSymbolizer(persist=False, debuginfod=None, **options)
    file = NativeFile(file_id(str(path), info.build_id), str(path), str(path), info.build_id)
    return sym, sym.symbolize(file, range(start, start + size))


def test_every_inlined_frame_is_qualified(binary):
    sym, result = driver_frames(binary)
    seen = set()
    for addr, frames in result.items():
        assert frames[0].function == "driver(int)" and not frames[0].inlined
        for frame in frames[1:]:
            # the inlined function's body is on its marker line (clang's line-0 rows: its declaration)
            expected = MARKERS[frame.line or frame.start_line]
            assert frame.function == expected or frame.function.startswith(expected + "("), hex(addr)
            seen.add(expected)
    assert seen == set(MARKERS.values())  # statics, anonymous namespaces, classes, same-named helpers
    if binary.name == "prog-clang++":  # clang gives every function a DW_AT_linkage_name
        assert sym.stats["native.inline_names_qualified"] == 0


def test_names_agree_with_llvm_symbolizer(binary):
    _, result = driver_frames(binary)
    reference = h.llvm_symbolizer(binary, list(result))
    compared = 0
    for addr, frames in result.items():
        theirs = reference[addr]
        if [f.line for f in frames] != [line for _, _, line in theirs]:
            continue  # a different line-table row choice, covered by test_symbolize_native
        for frame, (name, _, _) in zip(frames[1:], theirs[1:], strict=True):
            compared += 1
            if "::" in name or "(" in name:
                assert frame.function == name, hex(addr)  # from DW_AT_linkage_name: the same
            else:  # llvm-symbolizer falls back to the bare DW_AT_name; the scopes are added here
                assert frame.function == MARKERS[frame.line] and MARKERS[frame.line].endswith(name)
    assert compared >= len(MARKERS)


def test_start_lines_of_qualified_frames(binary):
    _, result = driver_frames(binary)
    for frames in result.values():
        for frame in frames[1:]:
            assert frame.start_line == (frame.line or frame.start_line) in MARKERS  # one-line functions


def test_qualification_does_not_need_start_lines(binary):
    _, with_lines = driver_frames(binary)
    _, without = driver_frames(binary, start_lines=False)
    assert {a: [f.function for f in fs] for a, fs in without.items()} == {
        a: [f.function for f in fs] for a, fs in with_lines.items()
    }
    assert {f.start_line for fs in without.values() for f in fs} == {0}


def _pyelftools_scopes(path: Path) -> dict[int, str]:
    """Scope of each subprogram DIE outside function bodies, by walking DIE parents in pyelftools."""
    scopes: dict[int, str] = {}
    with open(path, "rb") as stream:
        for unit in ELFFile(stream).get_dwarf_info().iter_CUs():
            for die in unit.iter_DIEs():
                if die.tag != "DW_TAG_subprogram":
                    continue
                names, parent, inside_body = [], die.get_parent(), False
                while parent is not None and parent.tag not in ("DW_TAG_compile_unit", "DW_TAG_partial_unit"):
                    if parent.tag == "DW_TAG_namespace":
                        attr = parent.attributes.get("DW_AT_name")
                        names.append(attr.value.decode() if attr else "(anonymous namespace)")
                    elif parent.tag in ("DW_TAG_class_type", "DW_TAG_structure_type", "DW_TAG_union_type"):
                        names.append(parent.attributes["DW_AT_name"].value.decode())
                    else:
                        inside_body = True
                    parent = parent.get_parent()
                if not inside_body:
                    scopes[die.offset] = "::".join(reversed(names))
    return scopes


def test_scanner_scopes_match_pyelftools(binary):
    sections = DwarfSections(str(binary))
    try:
        mine = {
            offset: sub.scope
            for unit in sections.units()
            for offset, sub in sections.subprograms(unit).items()
            if sub.scope is not None
        }
    finally:
        sections.close()
    reference = _pyelftools_scopes(binary)
    assert {o: s for o, s in mine.items() if o in reference} == reference
    assert {"geo::detail", "geo::Outer::Inner", "app::(anonymous namespace)::Local"} <= set(mine.values())
