"""Python mirror of perl_offsets.h: the per-process struct the BPF Perl walker reads, and the fields of a
FRAME_PERL frame's aux word.

Field names and constants are identical to the C header; tests/unit/test_perl_procinfo.py compiles the
header and compares.
"""

from __future__ import annotations

import ctypes

from fleetprof.interpreters.perl.discovery import PerlBinary

PL_CXTYPEMASK = 0xF
PL_CXt_SUB = 9
PL_CXt_FORMAT = 10
PL_CXt_EVAL = 11
PL_CXp_SUB_RE_FAKE = 0x80
PL_CXp_EVALBLOCK = 0x40
PL_CVf_NAMED = 0x8000
PL_OP_REQUIRE = 342
PL_MAX_STACKINFOS = 64
PL_AUX_LINE_MASK = 0xFFFF
PL_AUX_KIND_SHIFT = 16
PL_AUX_TRY = 1 << 20
PL_AUX_FROM_C = 1 << 21
PL_AUX_ID_IS_CV = 1 << 22
PL_AUX_REQUIRE = 1 << 23
PL_AUX_CEVALS_IN_SHIFT = 24
PL_AUX_RUNLEVELS_SHIFT = 26
PL_AUX_CEVALS_OUT_SHIFT = 28
PL_AUX_MAIN = 1 << 31
PL_CXp_TRY = 0x80


class PerlProcInfo(ctypes.Structure):
    """`struct perl_proc_info`: where one process's threads keep their interpreter, and the offsets."""

    _fields_ = (
        ("tpoff_got", ctypes.c_uint64),
        ("module_got", ctypes.c_uint64),
        ("tls_offset", ctypes.c_uint64),
        ("curinterp", ctypes.c_uint64),
        ("interp_curcop", ctypes.c_uint16),
        ("interp_curstackinfo", ctypes.c_uint16),
        ("si_cxstack", ctypes.c_uint8),
        ("si_prev", ctypes.c_uint8),
        ("si_cxix", ctypes.c_uint8),
        ("cx_size", ctypes.c_uint8),
        ("cx_type", ctypes.c_uint8),
        ("cx_u16", ctypes.c_uint8),
        ("cx_oldcop", ctypes.c_uint8),
        ("cx_sub_retop", ctypes.c_uint8),
        ("cx_sub_cv", ctypes.c_uint8),
        ("cx_eval_retop", ctypes.c_uint8),
        ("cx_eval_cv", ctypes.c_uint8),
        ("cop_line", ctypes.c_uint8),
        ("sv_any", ctypes.c_uint8),
        ("sv_u", ctypes.c_uint8),
        ("xcv_gv", ctypes.c_uint8),
        ("xcv_flags", ctypes.c_uint8),
        ("gp_egv", ctypes.c_uint8),
        ("reserved0", ctypes.c_uint8 * 3),
        ("version", ctypes.c_uint16),
        ("reserved1", ctypes.c_uint16),
    )


def perl_proc_info(binary: PerlBinary, bias: int) -> PerlProcInfo | None:
    """The BPF walker's info for a process running `binary` at `bias`; None without a thread-local
    interpreter (PL_current_context) to start from."""
    tls = binary.tls
    if tls is None or not (tls.tpoff_got or tls.module_got):
        return None
    lay = binary.layout
    return PerlProcInfo(
        tpoff_got=tls.tpoff_got + bias if tls.tpoff_got else 0,
        module_got=tls.module_got + bias if tls.module_got and not tls.tpoff_got else 0,
        tls_offset=tls.offset,
        curinterp=binary.curinterp + bias,
        interp_curcop=lay.interp_curcop,
        interp_curstackinfo=lay.interp_curstackinfo,
        si_cxstack=lay.si_cxstack,
        si_prev=lay.si_prev,
        si_cxix=lay.si_cxix,
        cx_size=lay.cx_size,
        cx_type=lay.cx_type,
        cx_u16=lay.cx_u16,
        cx_oldcop=lay.cx_oldcop,
        cx_sub_retop=lay.cx_sub_retop,
        cx_sub_cv=lay.cx_sub_cv,
        cx_eval_retop=lay.cx_eval_retop,
        cx_eval_cv=lay.cx_eval_cv,
        cop_line=lay.cop_line,
        sv_any=lay.sv_any,
        sv_u=lay.sv_u,
        xcv_gv=lay.xcv_gv,
        xcv_flags=lay.xcv_flags,
        gp_egv=lay.gp_egv,
        version=binary.version[0] << 8 | binary.version[1],
    )
