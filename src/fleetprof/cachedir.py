"""The one rule for where fleetprof keeps its on-disk caches (unwind tables, symbols, CPython discovery,
vDSO images), so every part of a run reads and writes the same tree."""

from __future__ import annotations

import os
from pathlib import Path

ENV = "FLEETPROF_CACHE_DIR"
SYSTEM_DIR = Path("/var/cache/fleetprof")


def default_cache_dir() -> Path:
    """$FLEETPROF_CACHE_DIR, else /var/cache/fleetprof as root, else $XDG_CACHE_HOME/fleetprof, else
    ~/.cache/fleetprof. Parts keep their own subdirectory below it (unwind/, symbols/, python/, vdso/)."""
    override = os.environ.get(ENV)
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return SYSTEM_DIR
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative $XDG_CACHE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fleetprof"
