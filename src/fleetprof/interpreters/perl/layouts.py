"""Perl 5 struct layouts (x86-64, ithreads + multiplicity): the offsets the Perl walker and namer read.

The 5.36 row was written from 5.36's intrpvar.h, cop.h, cv.h, sv.h, gv.h and hv.h and is checked field by
field with `offsetof` against the installed CORE headers (libperl5.36 ships them; see
tests/unit/test_perl_layouts.py). Unthreaded builds keep the file in a GV (`cop_filegv`) and the
interpreter's variables as globals: no row covers them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Context types and flags (cop.h): the low 4 bits of blku_type are the type, the high 4 its flags.
CXTYPEMASK = 0xF
CXt_NULL = 0  # a sort BLOCK (pp_sort pushes it on the PERLSI_SORT stack)
CXt_SUB = 9
CXt_FORMAT = 10
CXt_EVAL = 11  # eval '', eval {}, try {}, require
CXp_MULTICALL = 0x10  # a sub run by MULTICALL or sort (retop NULL: entered from C)
CXp_SUB_RE_FAKE = 0x80  # fake sub context for (?{ }) code in the current scope: not a frame
CXp_REAL = 0x20  # eval '' (not a lookalike)
CXp_EVALBLOCK = 0x40  # eval {} (also call_sv's G_EVAL scope, CXp_TRYBLOCK)
CXp_TRY = 0x80  # try {}
OP_REQUIRE = 342  # CxOLD_OP_TYPE(cx) = blku_u16 >> 7 of an eval context run by require/use
CX_OLD_OP_SHIFT = 7

# Stack infos (cop.h PERLSI_*): the runlevel a stackinfo was pushed for.
PERLSI_MAIN = 1
PERLSI_SORT = 3
PERLSI_MULTICALL = 10

# CV flags (cv.h), SV flags and types (sv.h).
CVf_ISXSUB = 0x0008
CVf_ANON = 0x0080
CVf_NAMED = 0x8000  # xcv_gv_u holds a name HEK (lexical `my sub`), not a GV
SVf_OOK = 0x02000000  # on a hash: the body has the aux struct (stash name)
SVTYPEMASK = 0xFF
SVt_PVGV = 9
SVt_PVHV = 12
SVt_PVCV = 13
SVt_PVFM = 14


@dataclass(frozen=True, slots=True)
class PerlLayout:
    """Every offset the walker and namer read in one Perl minor version (x86-64, threaded)."""

    version: tuple[int, int]
    source: str  # "headers": offsetof checked against the interpreter's own headers
    interp_curcop: int  # struct interpreter.Icurcop (PL_curcop: the running statement)
    interp_curstackinfo: int  # .Icurstackinfo (PL_curstackinfo: the innermost PERL_SI)
    si_cxstack: int  # struct stackinfo.si_cxstack (PERL_CONTEXT array)
    si_prev: int  # .si_prev (the runlevel below: PL_curstackinfo of the C code that pushed this one)
    si_cxix: int  # .si_cxix (I32: index of the innermost context, -1 when empty)
    si_type: int  # .si_type (I32: PERLSI_*)
    cx_size: int  # sizeof(PERL_CONTEXT)
    cx_type: int  # struct block.blku_type (U8: CXt_* | CXp_*)
    cx_u16: int  # .blku_u16 (an eval's old op type << 7)
    cx_oldcop: int  # .blku_oldcop (PL_curcop when the context was pushed: the caller's line)
    cx_sub_retop: int  # .blk_u.blku_sub.retop (NULL: entered from C, call_sv or sort)
    cx_sub_cv: int  # .blk_u.blku_sub.cv (same offset for formats)
    cx_eval_retop: int  # .blk_u.blku_eval.retop
    cx_eval_cv: int  # .blk_u.blku_eval.cv (the eval's own CV)
    cop_line: int  # struct cop.cop_line (line_t, u32)
    cop_file: int  # .cop_file (char *, threaded builds)
    sv_any: int  # SV head: body pointer
    sv_flags: int  # SV head: U32 flags (type in the low byte)
    sv_u: int  # SV head: union (a GV's GP *)
    xcv_stash: int  # XPVCV.xcv_stash (HV *)
    xcv_gv: int  # XPVCV.xcv_gv_u (GV *, or HEK * with CVf_NAMED)
    xcv_file: int  # XPVCV.xcv_file (char *)
    xcv_flags: int  # XPVCV.xcv_flags (U32)
    xgv_namehek: int  # XPVGV.xiv_u.xivu_namehek (GvNAME_HEK)
    xgv_stash: int  # XPVGV.xnv_u.xgv_stash (GvSTASH)
    gp_egv: int  # struct gp.gp_egv (effective GV of an aliased glob)
    hek_len: int  # struct hek.hek_len (I32)
    hek_key: int  # struct hek.hek_key (the bytes)
    xhv_aux: int  # struct xpvhv_with_aux.xhv_aux (5.36: inside the body, present with SVf_OOK)
    aux_name: int  # struct xpvhv_aux.xhv_name_u (HEK *, or HEK ** when the name count is non-zero)
    aux_name_count: int  # .xhv_name_count (I32)

    @property
    def interp_read_size(self) -> int:
        """Bytes of the interpreter one read covers: PL_curcop and PL_curstackinfo."""
        start = min(self.interp_curcop, self.interp_curstackinfo)
        return max(self.interp_curcop, self.interp_curstackinfo) + 8 - start

    @property
    def si_read_size(self) -> int:
        """Bytes of a stackinfo one read covers: si_cxstack, si_prev, si_cxix and si_type."""
        return max(self.si_cxstack + 8, self.si_prev + 8, self.si_cxix + 4, self.si_type + 4)

    @property
    def cx_read_size(self) -> int:
        """Bytes of a context one read covers: type, oldcop, retop and cv of subs and evals."""
        return max(self.cx_oldcop, self.cx_sub_retop, self.cx_sub_cv, self.cx_eval_cv) + 8


_ROWS: dict[tuple[int, int], PerlLayout] = {
    (5, 36): PerlLayout(
        version=(5, 36),
        source="headers",
        interp_curcop=208,
        interp_curstackinfo=224,
        si_cxstack=8,
        si_prev=16,
        si_cxix=32,
        si_type=44,
        cx_size=104,
        cx_type=0,
        cx_u16=2,
        cx_oldcop=16,
        cx_sub_retop=48,
        cx_sub_cv=72,
        cx_eval_retop=48,
        cx_eval_cv=88,
        cop_line=36,
        cop_file=48,
        sv_any=0,
        sv_flags=12,
        sv_u=16,
        xcv_stash=32,
        xcv_gv=56,
        xcv_file=64,
        xcv_flags=92,
        xgv_namehek=32,
        xgv_stash=40,
        gp_egv=56,
        hek_len=4,
        hek_key=8,
        xhv_aux=32,
        aux_name=0,
        aux_name_count=28,
    ),
}

SUPPORTED = tuple(sorted(_ROWS))


def layout_for(major: int, minor: int) -> PerlLayout | None:
    """The layout of Perl `major.minor`, None when fleetprof has no row for it."""
    return _ROWS.get((major, minor))


def supported_text() -> str:
    """The covered versions as a short phrase for reasons: "5.36"."""
    return ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED)
