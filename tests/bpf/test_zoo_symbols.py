"""Symbolization cases in a real `fleetprof record`: a stripped binary with MiniDebugInfo names every
function of its chain (static ones too), and C++ code inlined from namespaces and classes keeps them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from zoo.build import ZooError
from zoo.programs import CATALOG, CXX_INLINE_EXE, FOLD, MINIDEBUG_EXE, ROTATE, STIR, Profiler, evaluate

MIN_SHARE = 0.99
MIN_SAMPLES = 300  # of the whole program (1.5 s at 999 Hz)
MIN_GROUP = 100  # of one leaf group


def _stacks(zoo: Profiler, name: str) -> list:
    try:
        return zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))


def _whole(zoo: Profiler, name: str) -> None:
    for what, got in evaluate(CATALOG[name], _stacks(zoo, name)).items():
        floor = MIN_SAMPLES if what == "program" else MIN_GROUP
        assert got.selected >= floor, f"{name} {what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{name} {what}: {got.summary()}\n{got.worst()}"


def test_minidebuginfo_build_is_what_it_claims(build_dir: Path) -> None:
    """No .symtab, no DWARF, a .gnu_debugdata section; `hidden` is in neither symbol table of the file."""
    try:
        exe = Path(CATALOG[MINIDEBUG_EXE].command(build_dir, 1)[0])
    except ZooError as exc:
        pytest.fail(str(exc))
    sections = subprocess.run(["readelf", "-SW", str(exe)], capture_output=True, text=True, check=True).stdout
    assert ".symtab" not in sections and ".debug_" not in sections and ".gnu_debugdata" in sections
    dynsym = subprocess.run(["nm", "-D", str(exe)], capture_output=True, text=True, check=False).stdout
    assert not re.search(r"\b(hidden|hot|main)\b", dynsym)


def test_minidebuginfo_names_the_whole_chain(zoo: Profiler) -> None:
    """main -> outer -> middle -> inner -> hot -> hidden, named from .gnu_debugdata, whole in >= 99 %."""
    _whole(zoo, MINIDEBUG_EXE)
    stacks = _stacks(zoo, MINIDEBUG_EXE)
    leaves = {s.user[-1].name for s in stacks if s.user and s.user[-1].module == MINIDEBUG_EXE}
    assert {"hot", "hidden"} <= leaves  # hidden is static: only the embedded .symtab names it
    unnamed = sum(s.count for s in stacks for f in s.user if f.name.startswith(f"{MINIDEBUG_EXE}+0x"))
    assert unnamed == 0


def test_inlined_cxx_frames_carry_namespaces_and_classes(zoo: Profiler) -> None:
    """run_mix -> [Mixer::stir] -> [detail::rotate] and run_mix -> [Table::fold], whole in >= 99 %, and no
    inlined frame under its bare name."""
    _whole(zoo, CXX_INLINE_EXE)
    stacks = _stacks(zoo, CXX_INLINE_EXE)
    names = {f.name for s in stacks for f in s.user if f.module == CXX_INLINE_EXE}
    assert {n for n in names if re.fullmatch(rf"{STIR}|{ROTATE}|{FOLD}", n)} == {
        "mix::(anonymous namespace)::Mixer::stir",
        "mix::detail::rotate",
        "mix::Table::fold(unsigned long) const",
    }
    assert not names & {"stir", "rotate", "fold", "Mixer::stir", "detail::rotate"}
    nested = sum(
        s.count
        for s in stacks
        if [f.name for f in s.user[-3:]]
        == ["mix::run_mix(unsigned long)", "mix::(anonymous namespace)::Mixer::stir", "mix::detail::rotate"]
    )
    assert nested >= MIN_GROUP
