"""Go binaries symbolized from their own pclntab: names, file:line and inlined frames, locally and centrally.

The fixture (tests/fixtures/golang/main.go) is built with the installed `go`: unstripped (DWARF, the
oracle for inlined frames through llvm-symbolizer or addr2line -i), stripped (`-s -w`) and PIE.
`go tool addr2line` (pclntab, no inlining) is the oracle for outer names and innermost positions.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from fleetprof.symbolize import CentralSymbolizer, NativeFile, NativeSymbolizer, build_bundle, load_bundle
from fleetprof.symbolize.bundle import BundleError
from fleetprof.symbolize.golang import GoElf, Pclntab, PclntabError
from fleetprof.symbolize.golang.symbols import GoSymbols
from tests.unit import go_pclntab_fixture as synthetic

_spec = importlib.util.spec_from_file_location(
    "gobuild", Path(__file__).parents[1] / "fixtures" / "golang" / "gobuild.py"
)
gobuild = importlib.util.module_from_spec(_spec)
sys.modules["gobuild"] = gobuild
_spec.loader.exec_module(gobuild)

FILE_ID = "90" * 16
CHAIN = ("main.main", "main.middle", "main.middle.func1", "main.(*T).work", "main.leaf", "main.mix")


@pytest.fixture(scope="module")
def go_bins(tmp_path_factory):
    """The fixture built three ways, plus the compiler's inlining report."""
    work = tmp_path_factory.mktemp("go")
    try:
        report = gobuild.build(work / "chain", work, "-gcflags=-m")
        gobuild.build(work / "chain.stripped", work, "-ldflags=-s -w")
        gobuild.build(work / "chain.pie", work, "-buildmode=pie")
    except gobuild.GoBuildError as exc:
        pytest.fail(str(exc))
    return work, report


def main_addresses(path: Path, step: int = 1) -> list[int]:
    """Every `step`-th address of every main.* function, from the binary's own pclntab."""
    go = GoElf(str(path))
    assert go.table is not None
    return [
        a
        for entry, end, name in go.table.functions()
        if name.startswith("main.")
        for a in range(entry, end, step)
    ]


def frames_of(path: Path, addrs: list[int]) -> dict[int, list[tuple[str, str, int, bool]]]:
    """(function, file, line, inlined) per address from the local symbolizer, outermost first."""
    sym = NativeSymbolizer(persist=False)
    found = sym.symbolize(NativeFile(FILE_ID, str(path)), addrs)
    assert sym.problems == {}
    return {a: [(f.function, f.file, f.line, f.inlined) for f in fs] for a, fs in found.items()}


def dwarf_frames(path: Path, addrs: list[int]) -> dict[int, list[tuple[str, str, int]]]:
    """Frames with inlining from the unstripped build's DWARF, outermost first."""
    if shutil.which("llvm-symbolizer"):
        out = subprocess.run(
            ["llvm-symbolizer", "--inlining", "--functions=linkage", "--output-style=JSON", f"--obj={path}"],
            input="\n".join(hex(a) for a in addrs),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = {}
        for addr, line in zip(addrs, out.splitlines(), strict=True):
            symbols = json.loads(line)["Symbol"]
            result[addr] = [(s["FunctionName"], s["FileName"], s["Line"]) for s in reversed(symbols)]
        return result
    if shutil.which("addr2line"):
        out = subprocess.run(
            ["addr2line", "-f", "-i", "-a", "-e", str(path)],
            input="\n".join(hex(a) for a in addrs),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = {}
        for block in out.split("0x")[1:]:
            head, *lines = block.strip().splitlines()
            frames = []
            for func, where in zip(lines[::2], lines[1::2], strict=True):
                file, _, line = where.rpartition(":")
                frames.append((func, "" if file == "??" else file, int(line) if line.isdigit() else 0))
            result[int(head, 16)] = frames[::-1]
        return result
    pytest.fail("llvm-symbolizer or addr2line is needed as the DWARF oracle (make setup installs them)")


def test_the_compiler_inlines_the_chain(go_bins):
    _, report = go_bins
    for call in ("inlining call to mix", "inlining call to middle.func1", "inlining call to (*T).work"):
        assert call in report


def test_frames_match_dwarf_with_inlining(go_bins):
    """Every address of main.*: names, files, lines and inline chains as the DWARF says."""
    work, _ = go_bins
    addrs = main_addresses(work / "chain")
    mine = frames_of(work / "chain", addrs)
    reference = dwarf_frames(work / "chain", addrs)
    compared = 0
    for addr in addrs:
        if reference[addr] in ([("", "", 0)], [("??", "", 0)], []):  # alignment padding: no line
            assert len(mine[addr]) == 1 and mine[addr][0][2] == 0
            continue
        compared += 1
        assert [(f, file, line) for f, file, line, _ in mine[addr]] == reference[addr], hex(addr)
        assert [inl for *_, inl in mine[addr]] == [False] + [True] * (len(mine[addr]) - 1)
    assert compared > 100


def test_known_chain_names_and_lines(go_bins):
    """The chain's inlined frames, at lines read from the source markers."""
    work, _ = go_bins
    at = gobuild.markers()
    addrs = main_addresses(work / "chain.stripped")
    chains = {
        tuple((f, line) for f, _, line, _ in fs) for fs in frames_of(work / "chain.stripped", addrs).values()
    }
    assert (
        ("main.middle", at["middle-calls-closure"]),
        ("main.middle.func1", at["closure-calls-work"]),
        ("main.(*T).work", at["work-calls-leaf"]),
    ) in chains
    assert (("main.leaf", at["leaf-calls-mix"]), ("main.mix", at["mix"])) in chains
    assert (("main.main", at["main-calls-middle"]),) in chains
    names = {f for chain in chains for f, _ in chain}
    assert set(CHAIN) <= names
    outer = {fs[0][1] for fs in frames_of(work / "chain.stripped", addrs).values() if fs[0][2]}
    assert {Path(f).name for f in outer} == {"main.go"}  # inlined callees include flag.go, file.go


def test_outer_names_and_positions_match_go_addr2line(go_bins):
    """Outer function and innermost file:line as `go tool addr2line` reads the pclntab, runtime included."""
    work, _ = go_bins
    go = GoElf(str(work / "chain.stripped"))
    assert go.table is not None
    rng = random.Random(7)
    funcs = list(go.table.functions())
    addrs = sorted({rng.randrange(entry, end) for entry, end, _ in rng.sample(funcs, 300)})
    addrs += main_addresses(work / "chain.stripped", step=5)
    reference = gobuild.go_addr2line(work / "chain.stripped", addrs, work)
    mine = frames_of(work / "chain.stripped", addrs)
    for addr in addrs:
        name, file, line = reference[addr]
        frames = mine[addr]
        assert frames[0][0] == name, hex(addr)
        if line:
            assert (frames[-1][1], frames[-1][2]) == (file, line), hex(addr)


def test_stripped_and_unstripped_give_the_same_frames(go_bins):
    work, _ = go_bins
    addrs = main_addresses(work / "chain")
    assert addrs == main_addresses(work / "chain.stripped")
    assert frames_of(work / "chain", addrs) == frames_of(work / "chain.stripped", addrs)


def test_pie_build(go_bins):
    """A PIE build (pclntab in .data.rel.ro.gopclntab, text start relocated) against its DWARF."""
    work, _ = go_bins
    addrs = main_addresses(work / "chain.pie", step=3)
    mine = frames_of(work / "chain.pie", addrs)
    reference = dwarf_frames(work / "chain.pie", addrs)
    checked = [a for a in addrs if reference[a] and reference[a][0][0]]
    assert len(checked) > 30
    assert all([(f, file, line) for f, file, line, _ in mine[a]] == reference[a] for a in checked)


def test_stripped_go_binary_has_no_limited_note(go_bins):
    work, _ = go_bins
    sym = NativeSymbolizer(persist=False)
    sym.symbolize(
        NativeFile(FILE_ID, str(work / "chain.stripped")), main_addresses(work / "chain.stripped")[:5]
    )
    assert sym.notes == {} and sym.problems == {}
    assert sym.stats["native.go_files"] == 1 and sym.stats["native.go_addresses"] == 5


def test_central_gives_the_local_frames(go_bins, tmp_path):
    """Bundle round trip: the server's frames equal the host's, start lines included; cached too."""
    work, _ = go_bins
    path = work / "chain.stripped"
    addrs = main_addresses(path, step=2)
    sym = NativeSymbolizer(persist=False)
    local = sym.symbolize(NativeFile(FILE_ID, str(path)), addrs)
    data = build_bundle(NativeFile(FILE_ID, str(path)))
    bundle = load_bundle(data)
    assert bundle.go is not None and bundle.note == ""
    assert load_bundle(bundle.to_bytes(compress=False)).go is not None
    for round_ in range(2):  # uploaded, then from the central disk cache
        central = CentralSymbolizer(get_bundle=lambda _id: data, cache_dir=tmp_path / "c", debuginfod=None)
        answer = central.symbolize(FILE_ID, "", addrs)
        assert central.stats["central.cache_loads"] == round_
        for addr in addrs:
            want = [(f.function, f.file, f.line, f.inlined, f.start_line) for f in local[addr]]
            got = [(f.function, f.file, f.line, f.inlined, f.start_line) for f in answer[addr]]
            assert got == want, hex(addr)


@pytest.mark.parametrize(
    "magic", [synthetic.MAGIC_12, synthetic.MAGIC_116, synthetic.MAGIC_118, synthetic.MAGIC_120]
)
def test_every_layout_on_a_synthetic_table(magic):
    """Go 1.2, 1.16, 1.18 and 1.20+ layouts: names, files, lines and inline chains."""
    data, trees = synthetic.build(magic)

    def read(key: int, offset: int, size: int) -> bytes | None:
        tree = trees.get(key)
        return tree[offset : offset + size] if tree is not None and offset + size <= len(tree) else None

    table = Pclntab(data, funcdata=read)
    for addr, want in synthetic.EXPECTED.items():
        frames = table.frames(addr)
        assert [(f.function, f.file, f.line, f.inlined) for f in frames] == want, (hex(magic), hex(addr))
    assert table.frames(0xFFF) is None and table.frames(0x1060) is None
    start_lines = [f.start_line for f in table.frames(0x1025)]
    assert start_lines == ([5, 18, 28] if magic == synthetic.MAGIC_120 else [0, 0, 0])
    exported = GoSymbols.from_export(*GoSymbols(table).export())  # the bundle's copy of the trees
    assert [f.function for f in exported.lookup(0x1025)] == ["main.outer", "main.callee", "main.deeper"]


def test_truncated_or_corrupt_tables_fail_with_one_line():
    data, _ = synthetic.build(synthetic.MAGIC_118)
    for bad, words in [
        (b"", "truncated"),
        (data[:12], "truncated"),
        (b"\x01\x02\x03\x04" + data[4:], "not a pclntab"),
        (data[:8] + struct.pack("<Q", 1 << 40) + data[16:], "functions"),
        (data[:80], "offset"),
    ]:
        with pytest.raises(PclntabError, match=words) as caught:
            Pclntab(bad)
        assert "\n" not in str(caught.value)


def test_random_damage_never_raises_anything_else():
    """Flipped bytes anywhere: a PclntabError or frames, never another exception."""
    rng = random.Random(3)
    for magic in (synthetic.MAGIC_12, synthetic.MAGIC_116, synthetic.MAGIC_118, synthetic.MAGIC_120):
        data, trees = synthetic.build(magic)
        for _ in range(300):
            damaged = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            cut = bytes(damaged[: rng.choice([len(damaged), rng.randrange(len(damaged))])])
            read = _reader(trees)
            try:
                table = Pclntab(cut, funcdata=read)
                for addr in synthetic.EXPECTED:
                    GoSymbols(table).lookup(addr)
            except PclntabError as exc:
                assert "\n" not in str(exc)


def _reader(trees: dict[int, bytes]):
    return lambda key, off, size: trees.get(key, b"")[off : off + size]


def test_damaged_pclntab_in_a_binary_degrades(go_bins, tmp_path):
    """A Go binary whose pclntab header lies: one note, `module+0x…` frames, no exception; its bundle too."""
    work, _ = go_bins
    damaged = tmp_path / "chain.damaged"
    data = bytearray((work / "chain.stripped").read_bytes())
    go = GoElf(str(work / "chain.stripped"))
    assert go.location is not None
    struct.pack_into("<Q", data, go.location.file_offset + 8, 1 << 40)  # nfunc
    damaged.write_bytes(bytes(data))
    addrs = main_addresses(work / "chain.stripped")[:3]
    sym = NativeSymbolizer(persist=False)
    frames = sym.symbolize(NativeFile(FILE_ID, str(damaged)), addrs)
    assert all(fs[0].function == f"chain.damaged+0x{a:x}" for a, fs in frames.items())
    note = sym.notes[str(damaged)]
    assert "Go pclntab unusable" in note and "\n" not in note
    bundle = load_bundle(build_bundle(NativeFile(FILE_ID, str(damaged))))
    assert bundle.go is None and "Go pclntab unusable" in bundle.note


def test_bundle_with_a_damaged_go_section_is_refused(go_bins):
    work, _ = go_bins
    bundle = load_bundle(build_bundle(NativeFile(FILE_ID, str(work / "chain.stripped"))))
    bundle.go_raw = (bundle.go_raw[0][:100], bundle.go_raw[1])
    with pytest.raises(BundleError, match="Go pclntab") as caught:
        load_bundle(bundle.to_bytes(compress=True))
    assert "\n" not in str(caught.value)
