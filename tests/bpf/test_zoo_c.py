"""The C zoo without frame pointers (-O2 -fomit-frame-pointer): PIE, non-PIE, static, stripped. Each keeps
main -> outer -> middle -> [blend, inlined] -> inner -> hot -> hidden whole in >= 99 % of its samples."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from zoo.build import LIBC, ZooError, symbol_range
from zoo.programs import CATALOG, Profiler, evaluate

MIN_SHARE = 0.99
MIN_SAMPLES = 300


def _stacks(zoo: Profiler, name: str) -> list:
    try:
        return zoo.stacks(name)
    except ZooError as exc:
        pytest.fail(str(exc))


def _readelf(flag: str, path: Path) -> str:
    return subprocess.run(
        ["readelf", flag, "-W", str(path)], capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.parametrize("name", ["zoo_c", "zoo_c_nopie", "zoo_c_static", "zoo_c_stripped"])
def test_chain_is_whole(zoo: Profiler, name: str) -> None:
    """>= 99 % of the samples whose leaf is in the chain carry the whole chain, root to leaf."""
    results = evaluate(CATALOG[name], _stacks(zoo, name))
    for what, got in results.items():
        assert got.selected >= MIN_SAMPLES, f"{name} {what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{name} {what}: {got.summary()}\n{got.worst()}"


def test_builds_are_what_they_claim(build_dir: Path) -> None:
    """PIE is DYN, non-PIE is EXEC, static has no interpreter, stripped has no .symtab and no DWARF."""
    for name in ("zoo_c", "zoo_c_nopie", "zoo_c_static", "zoo_c_stripped"):
        try:
            CATALOG[name].command(build_dir, 1)
        except ZooError as exc:
            pytest.fail(str(exc))
    assert "DYN" in _readelf("-h", build_dir / "zoo_c")
    assert "EXEC" in _readelf("-h", build_dir / "zoo_c_nopie")
    assert "INTERP" not in _readelf("-l", build_dir / "zoo_c_static")
    sections = _readelf("-S", build_dir / "zoo_c_stripped")
    assert ".symtab" not in sections and ".debug_" not in sections and ".eh_frame" in sections


def test_inline_frame_is_a_frame_of_its_own(zoo: Profiler) -> None:
    """`blend`, inlined into `middle`, shows between middle and inner when DWARF is there, not otherwise."""
    for name, expect in (("zoo_c", True), ("zoo_c_stripped", False)):
        hot = [s for s in _stacks(zoo, name) if s.user and s.user[-1].name == "hot"]
        with_blend = sum(
            s.count for s in hot if [f.name for f in s.user[-4:-1]] == ["middle", "blend", "inner"]
        )
        total = sum(s.count for s in hot)
        everything = sum(s.count for s in _stacks(zoo, name))
        # hot's own loop (n steps, against hidden's n/4) is most of each call, so most of the run
        assert total >= everything // 2, f"{name}: {total} of {everything} samples in hot"
        assert (with_blend >= 0.99 * total) if expect else with_blend == 0, f"{name}: {with_blend}/{total}"


def test_stripped_frames_are_named_from_dynsym_or_module_offset(zoo: Profiler, build_dir: Path) -> None:
    """Exported functions keep their .dynsym names; the static `hidden` renders as module+offset, and the
    offset lies inside `hidden` per the unstripped twin's symbol table."""
    stacks = _stacks(zoo, "zoo_c_stripped")
    start, end = symbol_range(build_dir / "zoo_c_dyn", "hidden")
    offsets = []
    for s in stacks:
        names = [f.name for f in s.user]
        if names[-2:-1] == ["hot"] and names[-1].startswith("zoo_c_stripped+0x"):
            offsets.append(int(names[-1].rpartition("+")[2], 16))
    assert offsets, "samples in hidden()"
    assert all(start <= off < end for off in offsets), (hex(start), hex(end), sorted(map(hex, set(offsets))))
    seen = {f.name for s in stacks for f in s.user if f.module == "zoo_c_stripped"}
    assert {"main", "outer", "middle", "inner", "hot"} <= seen


def test_static_binary_has_libc_inside(zoo: Profiler) -> None:
    """In the static binary the start-up frames belong to the binary itself; no shared libc is mapped."""
    stacks = _stacks(zoo, "zoo_c_static")
    modules = {f.module for s in stacks for f in s.user}
    assert "libc.so.6" not in modules and LIBC not in modules
    assert any(
        f.name.startswith("__libc_start_main") and f.module == "zoo_c_static" for s in stacks for f in s.user
    )
