"""A Rust release build (cargo --release, no crates): main -> outer -> middle -> inner -> hot, under the
Rust runtime's start-up frames, whole in >= 99 %."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from zoo.build import ZooError
from zoo.programs import CATALOG, Profiler, evaluate

MIN_SHARE = 0.99


def test_rust_release_chain_is_whole(zoo: Profiler) -> None:
    """The chain, demangled without hashes (`zoo_rust::hot`), is whole in >= 99 %."""
    if shutil.which("cargo") is None and not (Path.home() / ".cargo" / "bin" / "cargo").exists():
        pytest.fail("cargo is not installed (make setup installs it)")
    try:
        stacks = zoo.stacks("zoo_rust")
    except ZooError as exc:
        pytest.fail(str(exc))
    for what, got in evaluate(CATALOG["zoo_rust"], stacks).items():
        assert got.selected >= 300, f"{what}: {got.summary()}"
        assert got.share >= MIN_SHARE, f"{what}: {got.summary()}\n{got.worst()}"
    names = {f.name for s in stacks for f in s.user}
    assert {"zoo_rust::outer", "zoo_rust::middle", "zoo_rust::inner", "zoo_rust::hot"} <= names
    assert not any(re.search(r"::h[0-9a-f]{16}$", n) for n in names), "legacy hash suffixes are dropped"
