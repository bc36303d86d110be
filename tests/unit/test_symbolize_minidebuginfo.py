"""MiniDebugInfo (`.gnu_debugdata`): stripped files built here get every function name back, statics too."""

from __future__ import annotations

import importlib.util
import lzma
import sys
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.elf.view import ElfError
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import NativeFile, NativeSymbolizer
from fleetprof.symbolize.minidebuginfo import read_minidebuginfo

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(
    not h.have("gcc", "g++", "nm", "objcopy", "strip"), reason="needs binutils+gcc"
)
NO_DEBUG_DIRS = ("/nonexistent-debug-dir",)


def nfile(path: Path) -> NativeFile:
    info = read_elf_info(path)
    return NativeFile(file_id(str(path), info.build_id), str(path), str(path), info.build_id)


def symbolizer(tmp_path: Path) -> NativeSymbolizer:
    return NativeSymbolizer(cache_dir=tmp_path / "cache", debug_dirs=NO_DEBUG_DIRS)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """prog.c, prog.cpp and libstripped.c built -O2 -g, then stripped with MiniDebugInfo added."""
    out = tmp_path_factory.mktemp("minidebuginfo")
    h.run("gcc", "-g", "-O2", "-Wl,--build-id", "-o", out / "cprog", h.FIXTURES / "prog.c")
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out / "cxxprog", h.FIXTURES / "prog.cpp")
    h.run("gcc", "-g", "-O2", "-shared", "-fPIC", "-o", out / "libfull.so", h.FIXTURES / "libstripped.c")
    for name in ("cprog", "cxxprog", "libfull.so"):
        h.add_minidebuginfo(out / name, out / f"{name}.mini")
    return out


def sized_functions(path: Path, *flags: str) -> dict[tuple[int, int], tuple[str, str]]:
    """(start, size) -> (nm type letter, demangled name) of sized text symbols."""
    out = {}
    for line in h.run("nm", *flags, "-S", "-C", "--defined-only", path).splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) == 4 and parts[2] in "tTwWiu" and int(parts[1], 16) > 0:
            out[(int(parts[0], 16), int(parts[1], 16))] = (parts[2], parts[3])
    return out


@pytest.mark.parametrize(
    ("name", "local"),
    [
        ("cprog", "helper_static"),
        ("cxxprog", "outer::inner::Box<long>::twice(long) const"),
        ("libfull.so", "internal_worker"),
    ],
)
def test_every_kept_function_is_named_from_minidebuginfo(built, tmp_path, name, local):
    stripped = built / f"{name}.mini"
    info = read_elf_info(stripped)
    assert not info.has_symtab and not info.has_debug_info
    exported = sized_functions(built / name, "-D")
    expected = {}
    for (start, size), (kind, function) in sized_functions(built / name).items():
        # Fedora keeps T/t symbols and .dynsym; weak ones that are not exported (C++ inline
        # functions, template instances) are in neither, so they stay unnamed.
        kept = kind in "tT" or (start, size) in exported
        for addr in (start, start + size // 2, start + size - 1):
            expected[addr] = function if kept else f"{stripped.name}+0x{addr:x}"
    sym = symbolizer(tmp_path)
    result = sym.symbolize(nfile(stripped), sorted(expected))
    wrong = {
        addr: (frames[0].function, expected[addr])
        for addr, frames in result.items()
        if not h.same_function(frames[0].function, expected[addr])
    }
    assert wrong == {}
    assert local in {frames[0].function for frames in result.values()}  # a local (t) symbol
    assert all(len(frames) == 1 and not frames[0].file for frames in result.values())
    assert sym.notes[str(stripped)] == (
        "stripped, no debug file: names from MiniDebugInfo (.gnu_debugdata), no file:line"
    )


def test_static_function_named_only_through_minidebuginfo(built, tmp_path):
    funcs = {n: s for s, _, n in h.nm_functions(built / "cprog")}
    static = funcs["helper_static"] + 4
    plain = tmp_path / "cprog.stripped"
    h.run("strip", "--strip-all", "-o", plain, built / "cprog")
    without = symbolizer(tmp_path / "a").symbolize(nfile(plain), [static])[static]
    with_mini = symbolizer(tmp_path / "b").symbolize(nfile(built / "cprog.mini"), [static])[static]
    assert without[0].function == f"cprog.stripped+0x{static:x}"
    assert with_mini[0].function == "helper_static"


def test_library_statics_and_exports_both_named(built, tmp_path):
    funcs = {n: s for s, _, n in h.nm_functions(built / "libfull.so")}
    internal, exported = funcs["internal_worker"] + 2, funcs["exported_entry"] + 2
    sym = symbolizer(tmp_path)
    result = sym.symbolize(nfile(built / "libfull.so.mini"), [internal, exported])
    assert result[internal][0].function == "internal_worker"  # only in the embedded .symtab
    assert result[exported][0].function == "exported_entry"  # only in .dynsym (Fedora's split)


def test_names_survive_the_disk_cache(built, tmp_path):
    static = {n: s for s, _, n in h.nm_functions(built / "cprog")}["helper_static"] + 4
    first = symbolizer(tmp_path)
    assert first.symbolize(nfile(built / "cprog.mini"), [static])[static][0].function == "helper_static"
    second = symbolizer(tmp_path)
    assert second.symbolize(nfile(built / "cprog.mini"), [static])[static][0].function == "helper_static"
    assert (first.stats["native.cache_builds"], second.stats["native.cache_loads"]) == (1, 1)


def test_embedded_elf_is_the_one_objcopy_wrote(built):
    assert read_minidebuginfo(str(built / "cprog.mini")) == (built / "cprog.mini.mdi" / "mini").read_bytes()
    assert read_minidebuginfo(str(built / "cprog")) is None


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not xz at all", "does not decompress"),
        (lzma.compress(b"hello, not an ELF"), "does not hold an ELF file"),
        (lzma.compress(b"\x7fELF" + bytes(4096))[:-40], "truncated"),
    ],
)
def test_damaged_section_degrades_to_exports_with_a_note(built, tmp_path, payload, reason):
    (tmp_path / "bad.xz").write_bytes(payload)
    bad = tmp_path / "libbad.so"
    h.run("strip", "--strip-all", "-o", bad, built / "libfull.so")
    h.run("objcopy", "--add-section", f".gnu_debugdata={tmp_path / 'bad.xz'}", bad)
    with pytest.raises(ElfError, match=reason):
        read_minidebuginfo(str(bad))
    funcs = {n: s for s, _, n in h.nm_functions(built / "libfull.so")}
    internal, exported = funcs["internal_worker"] + 2, funcs["exported_entry"] + 2
    sym = symbolizer(tmp_path)
    result = sym.symbolize(nfile(bad), [internal, exported])
    assert result[exported][0].function == "exported_entry"
    assert result[internal][0].function == f"libbad.so+0x{internal:x}"
    note = sym.notes[str(bad)]
    assert note.startswith("MiniDebugInfo unusable (") and reason in note
    assert note.endswith("; stripped (.dynsym only) and no debug file: exported functions only")
