"""Unwind tables for Go code from its pclntab (nativeunwind/gotable.py): a stripped Go binary, which has no
CFI at all, gets a table whose CFA at every Go pc is the one Go's own `.debug_frame` (in the unstripped
build) gives; the roots of goroutine and thread stacks end the stack."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from fleetprof.elf.view import ElfView
from fleetprof.nativeunwind.compiler import compile_frame_sections, compile_unwind_table
from fleetprof.nativeunwind.gotable import ROOTS
from fleetprof.nativeunwind.sources import debug_frame_section
from fleetprof.nativeunwind.table import STOP_RULE, UW_CFA_RSP, UnwindTable
from fleetprof.symbolize.golang import GoElf

_spec = importlib.util.spec_from_file_location(
    "gobuild", Path(__file__).parents[1] / "fixtures" / "golang" / "gobuild.py"
)
gobuild = importlib.util.module_from_spec(_spec)
sys.modules["gobuild"] = gobuild
_spec.loader.exec_module(gobuild)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The Go fixture, unstripped (with .debug_frame) and stripped (no CFI of any kind)."""
    work = tmp_path_factory.mktemp("gotable")
    try:
        gobuild.build(work / "chain", work)
        gobuild.build(work / "chain.stripped", work, "-ldflags=-s -w")
    except gobuild.GoBuildError as exc:
        pytest.fail(str(exc))
    return work / "chain", work / "chain.stripped"


def _functions(path: Path) -> dict[str, tuple[int, int]]:
    go = GoElf(str(path))
    try:
        assert go.table is not None
        return {name: (entry, end) for entry, end, name in go.table.functions()}
    finally:
        go.close()


def _debug_frame_table(path: Path) -> UnwindTable:
    with ElfView(str(path)) as elf:
        lo, hi = elf.exec_span()
        section = debug_frame_section(elf)
    assert section is not None, "the unstripped Go build has no .debug_frame"
    return compile_frame_sections([section], lo, hi)


def test_a_stripped_go_binary_is_tabled_from_its_pclntab(builds: tuple[Path, Path]) -> None:
    _, stripped = builds
    table = compile_unwind_table(str(stripped), find_debug=False)
    assert table.stats.sources == ["gopclntab"]
    funcs = _functions(stripped)
    entry = funcs["main.leaf"][0]
    assert table.lookup(entry)[:3] == (UW_CFA_RSP, 0, 8)  # at entry: CFA = rsp + 8, nothing saved yet
    for root in ("runtime.goexit", "runtime.rt0_go", "runtime.mstart"):
        assert table.lookup(funcs[root][0]) == STOP_RULE, root


def test_cfa_matches_go_debug_frame_at_every_pc(builds: tuple[Path, Path]) -> None:
    """Every row boundary of either table inside main.* and runtime.* functions: the same CFA offset."""
    unstripped, stripped = builds
    ours = compile_unwind_table(str(stripped), find_debug=False)
    theirs = _debug_frame_table(unstripped)
    funcs = _functions(unstripped)
    pcs = {pc for pc, _ in ours.iter_rows()} | {pc for pc, _ in theirs.iter_rows()}
    compared = mismatched = 0
    for name, (entry, end) in funcs.items():
        if not name.startswith(("main.", "runtime.")) or name in ROOTS:  # roots end stacks
            continue
        for pc in sorted(p for p in pcs if entry <= p < end):
            want, got = theirs.lookup(pc), ours.lookup(pc)
            if want is None or want[0] != UW_CFA_RSP:
                continue
            compared += 1
            if got is None or got[0] != UW_CFA_RSP or got[2] != want[2]:
                mismatched += 1
    assert compared > 1000
    assert mismatched == 0, f"{mismatched} of {compared} pcs disagree"
