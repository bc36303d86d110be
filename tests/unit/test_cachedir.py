"""The one cache-directory rule, and every part that keeps a cache following it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fleetprof import cachedir
from fleetprof.cachedir import default_cache_dir


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No cache variables set, HOME in tmp_path, not root."""
    monkeypatch.delenv("FLEETPROF_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    return monkeypatch


def test_override_wins_even_as_root(env: pytest.MonkeyPatch) -> None:
    env.setenv("FLEETPROF_CACHE_DIR", "/srv/fp-cache")
    env.setenv("XDG_CACHE_HOME", "/xdg")
    env.setattr(os, "geteuid", lambda: 0)
    assert default_cache_dir() == Path("/srv/fp-cache")


def test_root_uses_the_system_directory(env: pytest.MonkeyPatch) -> None:
    env.setenv("XDG_CACHE_HOME", "/xdg")
    env.setattr(os, "geteuid", lambda: 0)
    assert default_cache_dir() == Path("/var/cache/fleetprof") == cachedir.SYSTEM_DIR


def test_user_uses_xdg_cache_home(env: pytest.MonkeyPatch) -> None:
    env.setenv("XDG_CACHE_HOME", "/xdg")
    assert default_cache_dir() == Path("/xdg/fleetprof")


@pytest.mark.parametrize("xdg", ["", "relative/cache"], ids=["empty", "relative"])
def test_user_falls_back_to_home(env: pytest.MonkeyPatch, tmp_path: Path, xdg: str) -> None:
    """An empty or relative $XDG_CACHE_HOME is ignored, as the XDG spec says."""
    env.setenv("XDG_CACHE_HOME", xdg)
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "fleetprof"


def test_every_part_follows_the_rule(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The core's options, the native symbolizer's store and the tracker's vDSO copies all land under it."""
    from fleetprof.agent.core import CoreOptions
    from fleetprof.process.tracker import ProcessTracker
    from fleetprof.symbolize.native import NativeSymbolizer

    root = tmp_path / "cache"
    env.setenv("FLEETPROF_CACHE_DIR", str(root))
    assert CoreOptions().cache_dir == root
    symbolizer = NativeSymbolizer()
    assert symbolizer._store._root is not None and symbolizer._store._root.parent == root / "symbols"
    with ProcessTracker() as tracker:
        assert tracker._vdso._dir == str(root / "vdso")
