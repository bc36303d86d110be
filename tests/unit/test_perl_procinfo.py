"""perl_offsets.h and its mirror interpreters/perl/procinfo.py agree byte for byte; the info is filled from
discovery and the layout; the agent gives each runops native frame the Perl frames it runs, from the events
the kernel's walk put on each frame (agent/perl.py's regroup)."""

from __future__ import annotations

import ctypes
from pathlib import Path

from cprobe import run_c, struct_layout

from fleetprof.agent.perl import PerlSupport
from fleetprof.interpreters.perl import layouts, procinfo
from fleetprof.interpreters.perl.discovery import PerlBinary, PerlTls
from fleetprof.tracer import layout

HEADER = Path(procinfo.__file__).with_name("perl_offsets.h")
LAYOUT = layouts.layout_for(5, 36)


def test_struct_matches_c(tmp_path: Path) -> None:
    cls = procinfo.PerlProcInfo
    got = struct_layout(tmp_path, HEADER, "perl_proc_info", [f[0] for f in cls._fields_])
    assert got == [ctypes.sizeof(cls), *(getattr(cls, f[0]).offset for f in cls._fields_)]


def test_constants_match_c_and_the_layouts(tmp_path: Path) -> None:
    names = [n for n in dir(procinfo) if n.startswith("PL_")]
    body = [f'printf("%llu\\n", (unsigned long long){n});' for n in names]
    assert [int(v) for v in run_c(tmp_path, HEADER, body)] == [getattr(procinfo, n) for n in names]
    assert (procinfo.PL_CXt_SUB, procinfo.PL_CXt_EVAL) == (layouts.CXt_SUB, layouts.CXt_EVAL)
    assert (procinfo.PL_CXp_TRY, procinfo.PL_OP_REQUIRE) == (layouts.CXp_TRY, layouts.OP_REQUIRE)
    assert procinfo.PL_CVf_NAMED == layouts.CVf_NAMED


def test_info_is_filled_from_discovery_and_the_layout() -> None:
    assert LAYOUT is not None
    tls = PerlTls(offset=0, module_got=0, tpoff_got=0x39EFC0)
    binary = PerlBinary("/usr/bin/perl", "0" * 32, (5, 36, 0), 0x3AC3F8, tls, 0, ((0x120350, 76),), LAYOUT)
    info = procinfo.perl_proc_info(binary, 0x5555_0000_0000)
    assert info is not None
    assert (info.tpoff_got, info.module_got, info.curinterp) == (0x5555_0039_EFC0, 0, 0x5555_003A_C3F8)
    assert (info.interp_curcop, info.cx_size, info.version) == (LAYOUT.interp_curcop, LAYOUT.cx_size, 0x524)
    untls = PerlBinary("/usr/bin/perl", "0" * 32, (5, 36, 0), 0, None, 0, ((0x120350, 76),), LAYOUT)
    assert procinfo.perl_proc_info(untls, 0) is None


class _Maps:
    def update(self, key: bytes, value: bytes) -> None:
        pass

    def delete(self, key: bytes) -> None:
        pass


RUNOPS, PERL_FILE, LIBC = 0x120350, 0xE7E7, 0x11BC


def _native(key: int, addr: int) -> bytes:
    return layout.FRAME_STRUCT.pack(key, addr, 0, layout.FRAME_NATIVE, 0, 0)


def _perl(name: int, kind: int, *, from_c: bool = False, runlevels: int = 0, main: bool = False) -> bytes:
    aux = 7 | kind << procinfo.PL_AUX_KIND_SHIFT | runlevels << procinfo.PL_AUX_RUNLEVELS_SHIFT
    aux |= (procinfo.PL_AUX_FROM_C if from_c else 0) | (procinfo.PL_AUX_MAIN if main else 0)
    return layout.FRAME_STRUCT.pack(name, 0xC0, aux, layout.FRAME_PERL, 0, 0)


def test_perl_frames_go_over_the_runops_frames_they_belong_to() -> None:
    """Leaf in by_value, called by a sort block (pp_sort pushed a runlevel: the inner runops), under hot,
    price and main in perl_run's runops: BPF sent all four at the inner runops; the outer runops native
    frame gets hot, price and main, and the C frames between the two loops stay between them."""
    assert LAYOUT is not None
    support = PerlSupport(_Maps(), _Maps())  # type: ignore[arg-type]
    binary = PerlBinary("/usr/bin/perl", "0" * 32, (5, 36, 0), 0, None, 0, ((RUNOPS, 76),), LAYOUT)
    support._register_file(PERL_FILE, binary)
    by_value = _perl(4, procinfo.PL_CXt_SUB, from_c=True)
    hot = _perl(3, procinfo.PL_CXt_SUB, runlevels=1)
    price, main = _perl(2, procinfo.PL_CXt_SUB), _perl(0, 0, main=True)
    pp_sort, sortsv, outer = (
        _native(PERL_FILE, 0x1000),
        _native(PERL_FILE, 0x2000),
        _native(PERL_FILE, RUNOPS + 9),
    )
    perl_run, start = _native(PERL_FILE, 0x3000), _native(LIBC, 0x10)
    leaf = _native(PERL_FILE, 0x500)
    sent = b"".join([leaf, by_value, hot, price, main, sortsv, pp_sort, outer, perl_run, start])
    assert support.regroup(sent) == b"".join(
        [leaf, by_value, sortsv, pp_sort, hot, price, main, perl_run, start]
    )
    assert support.regroup(sent.replace(outer, perl_run)) == sent.replace(outer, perl_run), (
        "cut short: as sent"
    )
    plain = b"".join([leaf, perl_run, start])
    assert support.regroup(plain) == plain
