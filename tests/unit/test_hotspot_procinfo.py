"""hotspot_offsets.h and its mirror interpreters/hotspot/procinfo.py agree byte for byte, and the frame
encoding BPF sends is the one the namer reads."""

from __future__ import annotations

import ctypes
from pathlib import Path

from cprobe import run_c, struct_layout

from fleetprof.interpreters.hotspot import procinfo, symbolizer

HEADER = Path(procinfo.__file__).with_name("hotspot_offsets.h")


def test_struct_matches_c(tmp_path: Path) -> None:
    cls = procinfo.HotSpotProcInfo
    got = struct_layout(tmp_path, HEADER, "hotspot_proc_info", [f[0] for f in cls._fields_])
    assert got == [ctypes.sizeof(cls), *(getattr(cls, f[0]).offset for f in cls._fields_)]


def test_constants_match_c_and_the_namer(tmp_path: Path) -> None:
    names = [n for n in dir(procinfo) if n.startswith(("HS_", "JVM_"))]
    got = [int(v) for v in run_c(tmp_path, HEADER, [f'printf("%lld\\n", (long long){n});' for n in names])]
    assert got == [getattr(procinfo, n) for n in names]
    for name in (
        "JVM_FRAME_INTERPRETED",
        "JVM_FRAME_COMPILED",
        "JVM_AUX_KIND_MASK",
        "JVM_AUX_TOP",
        "JVM_AUX_COOKIE_SHIFT",
        "JVM_AUX_COOKIE_MASK",
    ):
        assert getattr(symbolizer, name) == getattr(procinfo, name), name
