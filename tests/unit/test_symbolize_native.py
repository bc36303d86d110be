"""Native symbolization of C and C++ fixtures, checked against addr2line and nm on the same binaries."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.profile.model import FrameKind, Mapping
from fleetprof.symbolize import NativeFile, NativeSymbolizer, symbolize_mapping

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(
    not h.have("gcc", "g++", "addr2line", "nm", "objcopy"), reason="needs binutils+gcc"
)


@pytest.fixture(scope="module")
def bins(tmp_path_factory):
    """Compile the C and C++ fixtures once: -g -O2, PIE and non-PIE."""
    out = tmp_path_factory.mktemp("native")
    c_src, cpp_src = h.FIXTURES / "prog.c", h.FIXTURES / "prog.cpp"
    h.run("gcc", "-g", "-O2", "-Wl,--build-id", "-o", out / "cprog", c_src)
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out / "cxxprog", cpp_src)
    h.run("gcc", "-g", "-O2", "-no-pie", "-fno-pie", "-Wl,--build-id", "-o", out / "cprog_nopie", c_src)
    if h.have("clang++"):
        h.run("clang++", "-g", "-O2", "-Wl,--build-id", "-o", out / "cxxprog_clang", cpp_src)
    return out


def nfile(path: Path, original: str = "") -> NativeFile:
    info = read_elf_info(path)
    return NativeFile(file_id(str(path), info.build_id), original or str(path), str(path), info.build_id)


def symbolizer(tmp_path: Path, **kw) -> NativeSymbolizer:
    return NativeSymbolizer(cache_dir=tmp_path / "cache", **kw)


def agrees(mine, theirs) -> bool:
    """Same chain of frames: names (modulo clone suffixes), source files and lines."""
    return len(mine) == len(theirs) and all(
        h.same_function(frame.function, name)
        and (
            os.path.normpath(frame.file).endswith(os.path.normpath(src).lstrip("./"))
            if src
            else not frame.file
        )
        and frame.line == line
        and frame.inlined == (depth > 0)
        for depth, (frame, (name, src, line)) in enumerate(zip(mine, theirs, strict=True))
    )


def check_against_addr2line(
    sym: NativeSymbolizer, path: Path, addrs: list[int], file: NativeFile | None = None
):
    """Every address agrees with addr2line, or else with llvm-symbolizer.

    addr2line 2.40 misnames inlined static functions in namespaces and drops inline frames on
    line-0 rows (clang); llvm-symbolizer is the second opinion there.
    """
    result = sym.symbolize(file or nfile(path), addrs)
    reference = h.addr2line(path, addrs)
    second = None
    for addr in addrs:
        if agrees(result[addr], reference[addr]):
            continue
        second = second if second is not None else h.llvm_symbolizer(path, addrs)
        assert addr in second and agrees(result[addr], second[addr]), (
            hex(addr),
            result[addr],
            reference[addr],
        )
    return result


@pytest.mark.parametrize("name", ["cprog", "cxxprog", "cprog_nopie", "cxxprog_clang"])
def test_matches_addr2line_on_every_function(bins, tmp_path, name):
    path = bins / name
    if not path.exists():
        pytest.skip("no clang++")
    addrs = h.sample(h.nm_functions(path), step=1)
    assert len(addrs) > 150
    check_against_addr2line(symbolizer(tmp_path), path, addrs)


@pytest.mark.parametrize("name", ["cprog", "cxxprog"])
def test_outer_function_matches_nm(bins, tmp_path, name):
    path = bins / name
    funcs = h.nm_functions(path)
    result = symbolizer(tmp_path).symbolize(nfile(path), [start for start, _, _ in funcs])
    for start, _, nm_name in funcs:
        assert h.same_function(result[start][0].function, nm_name), (hex(start), result[start][0], nm_name)


def test_inline_chain_and_start_lines_c(bins, tmp_path):
    path = bins / "cprog"
    marks = h.start_markers(h.FIXTURES / "prog.c")
    hot = next(s for s, size, n in h.nm_functions(path) if n == "hot_loop")
    sym = symbolizer(tmp_path)
    chains = sym.symbolize(nfile(path), range(hot, hot + 64))
    deepest = max(chains.values(), key=len)
    assert [f.function for f in deepest] == ["hot_loop", "mid_inline", "leaf_inline"]
    assert [f.inlined for f in deepest] == [False, True, True]
    assert [f.start_line for f in deepest] == [marks["hot_loop"], marks["mid_inline"], marks["leaf_inline"]]
    assert all(f.file.endswith("prog.c") for f in deepest)


def test_cxx_names_and_start_lines(bins, tmp_path):
    path = bins / "cxxprog"
    marks = h.start_markers(h.FIXTURES / "prog.cpp")
    funcs = {n: s for s, _, n in h.nm_functions(path)}
    sym = symbolizer(tmp_path)
    wanted = {
        "outer::inner::work(int)": "work",
        "outer::inner::Box<long>::twice(long) const": "Box::twice",
        "outer::inner::Box<double>::twice(double) const": "Box::twice",
        "use_lambda(std::vector<int, std::allocator<int> >&)": "use_lambda",
    }
    for name, mark in wanted.items():
        start = next(s for n, s in funcs.items() if n.startswith(name))
        frame = sym.symbolize(nfile(path), [start])[start][0]
        assert frame.function == name
        assert frame.system_name.startswith("_Z")
        assert frame.start_line == marks[mark], name
    lambda_start = next(s for n, s in funcs.items() if "{lambda(int)#1}::operator()" in n)
    frame = sym.symbolize(nfile(path), [lambda_start])[lambda_start][0]
    assert frame.function.startswith("use_lambda(std::vector<int, std::allocator<int> >&)::{lambda(int)#1}")


def test_stripped_with_debuglink(bins, tmp_path):
    src = bins / "cxxprog"
    work = tmp_path / "dl"
    work.mkdir()
    stripped = work / "cxxprog"
    h.run("objcopy", "--only-keep-debug", src, work / "cxxprog.debug")
    h.run("objcopy", "--strip-all", f"--add-gnu-debuglink={work / 'cxxprog.debug'}", src, stripped)
    assert not read_elf_info(stripped).has_symtab
    addrs = h.sample(h.nm_functions(src))
    sym = symbolizer(tmp_path, debug_dirs=(str(tmp_path / "nodebug"),))
    check_against_addr2line(sym, src, addrs, file=nfile(stripped))
    assert not sym.notes and not sym.problems


def test_stripped_with_build_id_tree(bins, tmp_path):
    src = bins / "cprog"
    build_id = read_elf_info(src).build_id
    debug_root = tmp_path / "debug"
    target = debug_root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    h.run("objcopy", "--only-keep-debug", src, target)
    stripped = tmp_path / "cprog"
    h.run("objcopy", "--strip-all", src, stripped)
    addrs = h.sample(h.nm_functions(src))
    sym = symbolizer(tmp_path, debug_dirs=(str(debug_root),))
    check_against_addr2line(sym, src, addrs, file=nfile(stripped))


def test_debuglink_with_wrong_crc_is_ignored(bins, tmp_path):
    src = bins / "cprog"
    h.run("objcopy", "--only-keep-debug", src, tmp_path / "cprog.debug")
    stripped = tmp_path / "cprog"
    h.run("objcopy", "--strip-all", f"--add-gnu-debuglink={tmp_path / 'cprog.debug'}", src, stripped)
    with open(tmp_path / "cprog.debug", "ab") as stream:
        stream.write(b"tampered")
    sym = symbolizer(tmp_path, debug_dirs=(str(tmp_path / "none"),))
    main = next(s for s, _, n in h.nm_functions(src) if n == "main")
    frames = sym.symbolize(nfile(stripped), [main])[main]
    assert frames[0].function == f"cprog+0x{main:x}"  # main is not in .dynsym; the debug file is rejected
    assert "cprog.debug not found" in sym.notes[str(stripped)]


def test_debug_file_installed_later_rebuilds_cache(bins, tmp_path):
    src = bins / "cprog"
    stripped = tmp_path / "cprog"
    h.run("objcopy", "--strip-all", src, stripped)
    debug_root = tmp_path / "debug"
    hot = next(s for s, _, n in h.nm_functions(src) if n == "hot_loop")
    first = symbolizer(tmp_path, debug_dirs=(str(debug_root),)).symbolize(nfile(stripped), [hot])[hot]
    assert first[0].function == f"cprog+0x{hot:x}"
    build_id = read_elf_info(src).build_id
    target = debug_root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    h.run("objcopy", "--only-keep-debug", src, target)
    second = symbolizer(tmp_path, debug_dirs=(str(debug_root),)).symbolize(nfile(stripped), [hot])[hot]
    assert second[0].function == "hot_loop" and second[0].file.endswith("prog.c")


def test_dynsym_only_library_never_misattributes(tmp_path):
    lib = tmp_path / "libstripped.so"
    h.run("gcc", "-O2", "-g", "-shared", "-fPIC", "-o", tmp_path / "full.so", h.FIXTURES / "libstripped.c")
    h.run("objcopy", "--strip-all", tmp_path / "full.so", lib)
    funcs = {n: (s, size) for s, size, n in h.nm_functions(tmp_path / "full.so")}
    exported, internal = funcs["exported_entry"], funcs["internal_worker"]
    sym = symbolizer(tmp_path, debug_dirs=(str(tmp_path / "none"),))
    result = sym.symbolize(nfile(lib), [exported[0] + 2, internal[0] + 2])
    assert result[exported[0] + 2][0].function == "exported_entry"
    assert result[internal[0] + 2][0].function == f"libstripped.so+0x{internal[0] + 2:x}"
    assert "exported functions only" in sym.notes[str(lib)]


def test_addresses_outside_code_fall_back_to_module_offset(bins, tmp_path):
    path = bins / "cprog"
    sym = symbolizer(tmp_path)
    result = sym.symbolize(nfile(path, original="/opt/app/bin/cprog"), [0x10, 0x7FFFFFFF, 1 << 40])
    assert [f[0].function for f in result.values()] == [
        "cprog+0x10",
        "cprog+0x7fffffff",
        "cprog+0x10000000000",
    ]
    assert sym.stats["native.unsymbolized"] == 3


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing", "empty", "directory"])
def test_bad_files_degrade_without_raising(bins, tmp_path, damage):
    path = tmp_path / "libbad.so"
    data = (bins / "cprog").read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:300])
    elif damage == "garbage":
        path.write_bytes(b"\x7fELF" + bytes(range(256)) * 8)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "directory":
        path.mkdir()
    file = NativeFile("ab" * 16, str(path), str(path))
    sym = symbolizer(tmp_path)
    result = sym.symbolize(file, [0x1139, 0x2000])
    assert result[0x1139] == (h_fallback("libbad.so", 0x1139),)
    assert len(sym.problems) == 1 and "\n" not in sym.problems[str(path)]
    assert sym.summary()


def test_garbage_dwarf_degrades_to_symbols(bins, tmp_path):
    path = tmp_path / "cprog"
    shutil.copy(bins / "cprog", path)
    with open(path, "r+b") as stream:
        import elftools.elf.elffile as elffile

        elf = elffile.ELFFile(stream)
        for name in (".debug_info", ".debug_abbrev", ".debug_line"):
            sec = elf.get_section_by_name(name)
            stream.seek(sec["sh_offset"])
            stream.write(bytes((i * 37 + 11) & 0xFF for i in range(sec["sh_size"])))
    main = next(s for s, _, n in h.nm_functions(bins / "cprog") if n == "main")
    sym = symbolizer(tmp_path)
    frames = sym.symbolize(nfile(path), [main, main + 4])
    for f in frames.values():
        assert f[0].function in ("main", f"cprog+0x{main:x}", f"cprog+0x{main + 4:x}")


def test_disk_cache_is_reused_and_survives_damage(bins, tmp_path):
    path = bins / "cxxprog"
    addrs = h.sample(h.nm_functions(path))
    first = symbolizer(tmp_path)
    cold = first.symbolize(nfile(path), addrs)
    assert first.stats["native.cache_builds"] == 1
    second = symbolizer(tmp_path)
    assert second.symbolize(nfile(path), addrs) == cold
    assert second.stats["native.cache_loads"] == 1 and not second.stats["native.cache_builds"]
    metas = list((tmp_path / "cache").rglob("*.meta"))
    assert len(metas) == 1
    metas[0].write_bytes(metas[0].read_bytes()[:40])
    third = symbolizer(tmp_path)
    assert third.symbolize(nfile(path), addrs) == cold
    assert third.stats["native.cache_builds"] == 1


def test_memory_only_and_lru_eviction(bins, tmp_path):
    sym = NativeSymbolizer(persist=False, max_files=1)
    for name in ("cprog", "cxxprog", "cprog"):
        main = next(s for s, _, n in h.nm_functions(bins / name) if n.startswith("main"))
        assert sym.symbolize(nfile(bins / name), [main])[main][0].function == "main"
    assert sym.stats["native.cache_builds"] == 3
    assert not list(tmp_path.rglob("*.meta"))


def test_model_frames_convenience(bins, tmp_path):
    path = bins / "cprog"
    info = read_elf_info(path)
    mapping = Mapping(
        file_id=file_id(str(path), info.build_id), path="/usr/bin/cprog", build_id=info.build_id
    )
    hot = next(s for s, _, n in h.nm_functions(path) if n == "hot_loop")
    frames = symbolize_mapping(symbolizer(tmp_path), mapping, [hot], open_path=str(path))[hot]
    assert frames[0].kind is FrameKind.NATIVE and frames[0].mapping is mapping and frames[0].address == hot
    assert frames[0].folded_name() == "hot_loop [cprog]"
    assert frames[0].start_line == h.start_markers(h.FIXTURES / "prog.c")["hot_loop"]


def h_fallback(module: str, addr: int):
    from fleetprof.symbolize import fallback_frame

    return fallback_frame(module, addr)
