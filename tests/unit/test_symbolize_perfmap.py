"""Perf maps name JIT code: parsing, lookups at range edges, malformed lines, later entries winning."""

from __future__ import annotations

from fleetprof.symbolize.perfmap import PerfMap

TEXT = """7f0000001000 40 LazyCompile:*hot /app/x.js:1
7f0000001040 10 Builtin: foo bar
not a line
7f00000020zz 10 broken
7f0000003000 0 empty
7f0000001000 20 JS:*hot /app/x.js:1:13
"""


def test_perf_map_lookup() -> None:
    pm = PerfMap.parse(TEXT)
    assert pm.lookup(0x7F0000001000) == "JS:*hot /app/x.js:1:13"  # the later entry for a start wins
    assert pm.lookup(0x7F000000101F) == "JS:*hot /app/x.js:1:13"
    assert pm.lookup(0x7F0000001020) is None
    assert pm.lookup(0x7F0000001045) == "Builtin: foo bar"
    assert pm.lookup(0x7F0000001050) is None
    assert pm.lookup(0x7F0000003000) is None
    assert pm.lookup(0x1000) is None
    assert len(pm.starts) == 2
