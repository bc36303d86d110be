"""ruby_offsets.h and its mirror interpreters/ruby/procinfo.py agree byte for byte; the info is filled from
the layout and discovery; a frame's pc travels as its low 32 bits and is rebuilt against its iseq."""

from __future__ import annotations

import ctypes
from pathlib import Path

import pytest
from cprobe import run_c, struct_layout

from fleetprof.interpreters.ruby import layouts, procinfo
from fleetprof.interpreters.ruby.discovery import RubyBinary, RubyTls

HEADER = Path(procinfo.__file__).with_name("ruby_offsets.h")
LAYOUT = layouts.layout_for(3, 1)


def _binary(tls: RubyTls | None) -> RubyBinary:
    assert LAYOUT is not None
    return RubyBinary(
        path="/usr/lib/libruby.so.3.1",
        file_id="0" * 32,
        version=(3, 1, 2),
        version_source="ruby_version",
        tls=tls,
        single_main_ractor=0,
        current_vm_ptr=0,
        global_symbols=0,
        global_symbols_source="",
        vm_exec=(0x1000, 0x200),
        layout=LAYOUT,
    )


def test_struct_matches_c(tmp_path: Path) -> None:
    cls = procinfo.RubyProcInfo
    got = struct_layout(tmp_path, HEADER, "ruby_proc_info", [f[0] for f in cls._fields_])
    assert got == [ctypes.sizeof(cls), *(getattr(cls, f[0]).offset for f in cls._fields_)]


def test_constants_match_c_and_the_layouts(tmp_path: Path) -> None:
    names = [n for n in dir(procinfo) if n.startswith("RB_")]
    got = [
        int(v)
        for v in run_c(tmp_path, HEADER, [f'printf("%llu\\n", (unsigned long long){n});' for n in names])
    ]
    assert got == [getattr(procinfo, n) for n in names]
    assert procinfo.RB_FRAME_FINISH == layouts.VM_FRAME_FLAG_FINISH
    assert procinfo.RB_FRAME_CFRAME == layouts.VM_FRAME_FLAG_CFRAME
    assert procinfo.RB_FRAME_MAGIC_DUMMY == layouts.VM_FRAME_MAGIC_DUMMY
    assert (procinfo.RB_IMEMO_SVAR, procinfo.RB_IMEMO_MENT) == (layouts.IMEMO_SVAR, layouts.IMEMO_MENT)
    assert (procinfo.RB_T_IMEMO, procinfo.RB_FL_USHIFT) == (layouts.T_IMEMO, layouts.FL_USHIFT)


def test_info_is_filled_from_discovery_and_the_layout() -> None:
    assert LAYOUT is not None
    info = procinfo.ruby_proc_info(
        _binary(RubyTls(offset=8, module_got=0x3ADA48, tpoff_got=0)), 0x7F00_0000_0000
    )
    assert info is not None
    assert (info.module_got, info.tls_offset, info.version) == (0x7F00_003A_DA48, 8, 0x301)
    for field in ("ec_vm_stack", "ec_vm_stack_size", "ec_cfp", "cfp_pc", "cfp_iseq", "cfp_ep", "cfp_size"):
        assert getattr(info, field) == getattr(LAYOUT, field), field
    assert (info.me_def, info.svar_cref_or_me) == (LAYOUT.me_def, LAYOUT.svar_cref_or_me)


@pytest.mark.parametrize("tls", [None, RubyTls(offset=8, module_got=0, tpoff_got=0x3000)])
def test_builds_the_walker_cannot_reach_are_refused(tls: RubyTls | None) -> None:
    """No thread-local execution context, or an initial-exec slot: no info (the agent says why)."""
    assert procinfo.ruby_proc_info(_binary(tls), 0) is None


@pytest.mark.parametrize(
    ("encoded", "pc"),
    [
        (0x5555_0000_1000, 0x5555_0000_1040),
        (0x5555_FFFF_FFF0, 0x5556_0000_0010),
        (0x7F00_1234_0000, 0x7F00_1234_0000),
    ],
)
def test_pc_is_rebuilt_from_its_low_bits(encoded: int, pc: int) -> None:
    assert procinfo.rebuild_pc(pc & 0xFFFF_FFFF, encoded) == pc
