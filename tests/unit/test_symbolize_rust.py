"""Rust symbolization (legacy and v0 mangling), checked against addr2line on the same binaries."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import NativeFile, NativeSymbolizer

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(not h.have("rustc", "addr2line", "nm"), reason="needs rustc and binutils")

OWN = r"(^|[<\s])prog::"  # functions of the fixture crate (std's are checked too, through inlining)


@pytest.fixture(scope="module", params=["legacy", "v0"])
def rust_bin(request, tmp_path_factory):
    """The Rust fixture built in release mode with debuginfo, in both symbol-mangling schemes."""
    out = tmp_path_factory.mktemp(f"rust-{request.param}") / "prog"
    scheme = ["-C", "symbol-mangling-version=v0"] if request.param == "v0" else []  # legacy is the default
    h.run("rustc", "-C", "opt-level=2", "-C", "debuginfo=2", *scheme, "-o", out, h.FIXTURES / "prog.rs")
    assert any(n.startswith("_R" if request.param == "v0" else "_ZN") for n in h.run("nm", out).split())
    return request.param, out


def symbolize(path: Path, addrs: list[int], tmp: Path):
    info = read_elf_info(path)
    sym = NativeSymbolizer(cache_dir=tmp / "cache")
    return sym.symbolize(NativeFile(file_id(str(path), info.build_id), str(path)), addrs)


def test_crate_functions_match_addr2line(rust_bin, tmp_path):
    _, path = rust_bin
    funcs = h.nm_functions(path)
    addrs = h.sample(funcs, keep=OWN, step=2)
    assert len(addrs) > 50
    result = symbolize(path, addrs, tmp_path)
    reference = h.addr2line(path, addrs)
    for addr in addrs:
        mine, theirs = result[addr], reference[addr]
        assert [f.function for f in mine] == [t[0] for t in theirs], hex(addr)
        assert [f.line for f in mine] == [t[2] for t in theirs], hex(addr)
        assert [f.inlined for f in mine] == [False] + [True] * (len(mine) - 1)


def test_mangled_names_kept_and_hash_dropped(rust_bin, tmp_path):
    scheme, path = rust_bin
    funcs = {n: s for s, _, n in h.nm_functions(path)}
    start = next(s for n, s in funcs.items() if n.startswith("prog::closure_user"))
    frame = symbolize(path, [start], tmp_path)[start][0]
    assert frame.function == "prog::closure_user"
    assert frame.system_name.startswith("_ZN" if scheme == "legacy" else "_R")
    assert frame.file.endswith("prog.rs") and frame.start_line == 30


def test_generic_trait_impl_names(rust_bin, tmp_path):
    scheme, path = rust_bin
    funcs = {n: s for s, _, n in h.nm_functions(path)}
    area = next(
        s for n, s in funcs.items() if n.startswith("<prog::shapes::Square as prog::shapes::Area>::area")
    )
    total = next(s for n, s in funcs.items() if n.startswith("prog::shapes::total"))
    result = symbolize(path, [area, total], tmp_path)
    assert result[area][0].function == "<prog::shapes::Square as prog::shapes::Area>::area"
    expected = "prog::shapes::total::<prog::shapes::Square>" if scheme == "v0" else "prog::shapes::total"
    assert result[total][0].function == expected
