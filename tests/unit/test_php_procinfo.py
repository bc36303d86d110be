"""php_offsets.h and its mirror interpreters/php/procinfo.py: the struct the BPF PHP walker reads, its
constants and its frame cookie agree byte for byte and bit for bit; the info is filled from the layout."""

from __future__ import annotations

import ctypes
import random
from pathlib import Path

import pytest
from cprobe import run_c, struct_layout

from fleetprof.interpreters.php import layouts, procinfo

HEADER = Path(procinfo.__file__).with_name("php_offsets.h")


def test_struct_matches_c(tmp_path: Path) -> None:
    cls = procinfo.PhpProcInfo
    got = struct_layout(tmp_path, HEADER, "php_proc_info", [f[0] for f in cls._fields_])
    assert got == [ctypes.sizeof(cls), *(getattr(cls, f[0]).offset for f in cls._fields_)]


def test_constants_and_cookie_match_c(tmp_path: Path) -> None:
    names = [n for n in dir(procinfo) if n.startswith("PHP_")]
    rng = random.Random(7)
    cases = [(0, 0, 0), ((1 << 64) - 1, (1 << 64) - 1, 4), (0x7F00_DEAD_BEEF, 0x5555_0000_1234, 2)]
    cases += [(rng.getrandbits(64), rng.getrandbits(64), rng.choice((1, 2, 4))) for _ in range(50)]
    body = [f'printf("%llu\\n", (unsigned long long){n});' for n in names]
    body += [f'printf("%u\\n", php_func_cookie({a}ull, {b}ull, {c}));' for a, b, c in cases]
    got = [int(v) for v in run_c(tmp_path, HEADER, body)]
    assert got[: len(names)] == [getattr(procinfo, n) for n in names]
    assert got[len(names) :] == [procinfo.php_func_cookie(*case) for case in cases]


@pytest.mark.parametrize("version", layouts.SUPPORTED)
def test_info_is_filled_from_the_layout(version: tuple[int, int]) -> None:
    layout = layouts.layout_for(*version)
    assert layout is not None
    info = procinfo.php_proc_info(layout, 0x55AA_0000_1000)
    assert info.current_execute_data == 0x55AA_0000_1000
    assert info.version == version[0] << 8 | version[1]
    for name in (
        "ex_opline",
        "ex_func",
        "ex_call_info",
        "ex_prev",
        "fn_type",
        "fn_name",
        "fn_scope",
        "op_lineno",
    ):
        assert getattr(info, name) == getattr(layout, name), name
    assert procinfo.PHP_CALL_TOP == layouts.ZEND_CALL_TOP
    assert (procinfo.PHP_FN_INTERNAL, procinfo.PHP_FN_USER, procinfo.PHP_FN_EVAL) == layouts.FUNCTION_TYPES
