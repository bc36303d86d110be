"""Batched lookups (`symbolize.batch`) give the frames of the scalar path, address by address."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from fleetprof.symbolize import batch as batch_module
from fleetprof.symbolize.batch import BatchLookup, records
from fleetprof.symbolize.bundle import build_bundle, load_bundle
from fleetprof.symbolize.lookup import FileSymbols
from fleetprof.symbolize.plt import read_plt_names

_spec = importlib.util.spec_from_file_location(
    "symbolize_helpers", Path(__file__).parents[1] / "fixtures" / "symbolize" / "helpers.py"
)
h = importlib.util.module_from_spec(_spec)
sys.modules["symbolize_helpers"] = h
_spec.loader.exec_module(h)

pytestmark = pytest.mark.skipif(
    not h.have("gcc", "g++", "nm", "objcopy", "strip"), reason="needs binutils+gcc"
)
NAMES = ["cprog", "cxxprog", "inline_names", "split", "mini"]


@pytest.fixture(scope="module")
def bins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """C and C++ fixtures with inlining; one stripped with a separate debug file (two SymCaches in its
    bundle), one stripped with MiniDebugInfo (symbol-only functions, bounded by their sizes)."""
    out = tmp_path_factory.mktemp("batch")
    h.run("gcc", "-g", "-O2", "-Wl,--build-id", "-o", out / "cprog", h.FIXTURES / "prog.c")
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out / "cxxprog", h.FIXTURES / "prog.cpp")
    h.run("g++", "-g", "-O2", "-Wl,--build-id", "-o", out / "inline_names", h.FIXTURES / "inline_names.cpp")
    h.run("objcopy", "--only-keep-debug", out / "cxxprog", out / "split.debug")
    h.run("strip", "--strip-debug", "-o", out / "split", out / "cxxprog")
    h.add_minidebuginfo(out / "cprog", out / "mini")
    return out


def bundle_of(bins: Path, name: str) -> bytes:
    debug = str(bins / "split.debug") if name == "split" else ""
    return build_bundle(str(bins / name), debug_dirs=(), debug_path=debug)


def every_address(path: Path) -> list[int]:
    """Every byte of every function, the PLT stubs, and the gaps around them."""
    funcs = h.nm_functions(path.with_name("cxxprog") if path.name == "split" else path)
    if not funcs:
        funcs = h.nm_functions(path.with_name("cprog"))
    plt = read_plt_names(str(path))
    low = min([start for start, _, _ in funcs] + list(plt.starts))
    high = max(start + size for start, size, _ in funcs)
    return list(range(low - 0x40, high + 0x40))


def tables(data: bytes, start_lines: bool = True) -> FileSymbols:
    """Fresh lookup tables (empty memos) over a bundle."""
    return load_bundle(data).file_symbols(start_lines)


def scalar(data: bytes, addrs: list[int], start_lines: bool = True) -> list[object]:
    symbols = tables(data, start_lines)
    return [records(symbols.resolve(a)) for a in addrs]


@pytest.mark.parametrize("name", NAMES)
def test_every_address_at_once(bins: Path, name: str) -> None:
    data = bundle_of(bins, name)
    addrs = every_address(bins / name)
    batch = BatchLookup(tables(data))
    assert batch.resolve(addrs) == scalar(data, addrs)


@pytest.mark.parametrize("name", NAMES)
def test_names_from_the_bundle_equal_names_demangled_here(bins: Path, name: str) -> None:
    """The bundle's precomputed outer names (`outer_names`) give the answers of demangling on the spot."""
    data = bundle_of(bins, name)
    addrs = every_address(bins / name)
    symbols = tables(data)
    assert BatchLookup(symbols, load_bundle(data).outer_names).resolve(addrs) == scalar(data, addrs)


def test_the_split_bundle_has_two_parts(bins: Path) -> None:
    assert len(load_bundle(bundle_of(bins, "split")).parts) == 2


@pytest.mark.parametrize("name", NAMES)
def test_shuffled_batches_with_memos_warm_and_forgotten(bins: Path, name: str) -> None:
    """Answers don't depend on what earlier batches left memoized, nor on order or repeats."""
    data = bundle_of(bins, name)
    addrs = every_address(bins / name)
    expected = dict(zip(addrs, scalar(data, addrs), strict=True))
    rng = random.Random(5)
    shuffled = addrs[:] + rng.sample(addrs, len(addrs) // 4)
    rng.shuffle(shuffled)
    batch = BatchLookup(tables(data))
    for at in range(0, len(shuffled), 997):
        chunk = shuffled[at : at + 997]
        assert batch.resolve(chunk) == [expected[a] for a in chunk]
        if at % 3 == 0:
            batch.forget()


@pytest.mark.parametrize("name", ["mini", "cxxprog"])
def test_memos_restarting_when_full_change_no_answer(
    bins: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bundle_of(bins, name)
    addrs = every_address(bins / name)
    expected = scalar(data, addrs)
    monkeypatch.setattr(batch_module, "_MEMO_LIMIT", 8)
    batch = BatchLookup(tables(data), load_bundle(data).outer_names)
    assert [a for at in range(0, len(addrs), 301) for a in batch.resolve(addrs[at : at + 301])] == expected


def test_without_start_lines(bins: Path) -> None:
    data = bundle_of(bins, "inline_names")
    addrs = every_address(bins / "inline_names")
    assert BatchLookup(tables(data, False)).resolve(addrs) == scalar(data, addrs, False)


def test_addresses_no_table_holds(bins: Path) -> None:
    """Addresses far outside the file, negative or past 2**63 (the scalar path takes the batch)."""
    data = bundle_of(bins, "cprog")
    inside = every_address(bins / "cprog")[::37]
    for odd in ([0, 1, 0xFFFF_FFFF_FFF0, 1 << 40], [-1, *inside], [1 << 63, *inside], [1 << 70]):
        assert BatchLookup(tables(data)).resolve(odd) == scalar(data, odd)
    assert BatchLookup(tables(data)).resolve([]) == []


def test_a_reader_turned_off_falls_back_to_symbolic(bins: Path) -> None:
    data = bundle_of(bins, "cxxprog")
    addrs = every_address(bins / "cxxprog")[::5]
    symbols = tables(data)
    batch = BatchLookup(symbols)
    half = len(addrs) // 2
    first = batch.resolve(addrs[:half])
    symbols.parts[0].reader.trusted = False
    assert first + batch.resolve(addrs[half:]) == scalar(data, addrs)


def test_chain_indices_read_what_chain_reads(bins: Path) -> None:
    """The reader's index view of a range (its locations' fields) equals its Loc view."""
    symbols = tables(bundle_of(bins, "inline_names"))
    reader = symbols.parts[0].reader
    assert reader is not None
    for index, rel in enumerate(reader.starts):
        locs = reader.chain(index, rel)
        found = reader.chain_indices(index, rel)
        assert locs is not None and found is not None
        fields = [reader.location(at)[1:] for at in found]
        assert fields == [(x.sym_addr, x.line, x.lang, x.symbol, x.full_path) for x in locs], hex(rel)
    assert reader.chain_indices(-1, 0) == ()


@pytest.mark.parametrize("name", NAMES)
def test_the_batch_path_answers_functions_itself(
    bins: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only addresses no SymCache range answers (gaps, PLT stubs) go through the scalar path."""
    data = bundle_of(bins, name)
    symbols = tables(data)
    asked: list[int] = []
    resolve = FileSymbols.resolve

    def counted(self: FileSymbols, addr: int) -> object:
        asked.append(addr)
        return resolve(self, addr)

    monkeypatch.setattr(FileSymbols, "resolve", counted)
    funcs = h.nm_functions(bins / ("cxxprog" if name == "split" else "cprog" if name == "mini" else name))
    inside = [start + off for start, size, _ in funcs for off in range(0, size, 3)]
    BatchLookup(symbols).resolve(inside)
    assert all(r is not None and r.trusted for r in (p.reader for p in symbols.parts))
    assert len(asked) < len(inside) // 20, (len(asked), len(inside))


def test_without_numpy_every_address_takes_the_scalar_path(
    bins: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bundle_of(bins, "cxxprog")
    addrs = every_address(bins / "cxxprog")[::7]
    monkeypatch.setattr(batch_module, "np", None)
    assert BatchLookup(tables(data)).resolve(addrs) == scalar(data, addrs)


def test_a_reader_that_disagrees_mid_batch_hands_the_rest_to_symbolic(bins: Path) -> None:
    """Once a reader's arrays disagree with symbolic, the batch answers as the scalar path does."""
    data = bundle_of(bins, "inline_names")
    addrs = every_address(bins / "inline_names")[::3]

    def corrupted() -> FileSymbols:
        symbols = tables(data)
        reader = symbols.parts[0].reader
        assert reader is not None
        reader._names = {offset: "wrong" for offset in range(1 << 16)}  # names decoded wrongly from now on
        reader._paths = {0xFFFFFFFF: ""}  # so a range with a source file asks symbolic, and compares
        return symbols

    batched, alone = corrupted(), corrupted()
    assert BatchLookup(batched).resolve(addrs) == [records(alone.resolve(a)) for a in addrs]
    assert not batched.parts[0].reader.trusted and not alone.parts[0].reader.trusted
