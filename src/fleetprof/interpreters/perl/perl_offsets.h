/* Perl frame walking: the per-process layout the BPF Perl walker reads, and how a frame travels.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/interpreters/perl/procinfo.py (same
 * field names), checked by tests/unit/test_perl_procinfo.py. Userspace fills one `struct perl_proc_info` per
 * process from interpreters/perl/layouts.py; the BPF code knows no Perl version.
 *
 * Walk (interpreters/perl/walker.py does the same in userspace, as the reference), at the innermost
 * runops frame, all of the thread's Perl frames at once (Perl subs called from Perl share one runops loop;
 * the agent then gives each runops native frame its own frames, from the events each frame carries):
 *   interp: tp = task fsbase; tpoff_got: *(tp + *(s64 *)tpoff_got); else the DTV route through module_got
 *   (tls_offset into the block); 0: not a Perl thread. cop = *(interp + interp_curcop), si = the innermost
 *   stackinfo *(interp + interp_curstackinfo); per stackinfo (down si_prev) its contexts cxix..0: a sub or
 *   format (not a regex's fake sub) is a frame named by its GV (GvEGV when set) or, lexical subs, its CV; an
 *   eval is a frame unless it is call_sv(G_EVAL)'s scope (retop NULL with EVALBLOCK: an event); each frame
 *   is at `cop`, which then becomes the context's oldcop. A stackinfo with contexts below which another
 *   lies is a runlevel C pushed (an event). At the bottom, the main program, when interp == PL_curinterp.
 *   FRAME_PERL: id = the GV (or the CV, PL_ID_IS_CV), addr = the COP, aux = PL_AUX_* fields.
 */
#ifndef FLEETPROF_PERL_OFFSETS_H
#define FLEETPROF_PERL_OFFSETS_H

#define PL_CXTYPEMASK 0xf
#define PL_CXt_SUB 9
#define PL_CXt_FORMAT 10
#define PL_CXt_EVAL 11
#define PL_CXp_SUB_RE_FAKE 0x80
#define PL_CXp_EVALBLOCK 0x40
#define PL_CVf_NAMED 0x8000
#define PL_OP_REQUIRE 342
#define PL_MAX_STACKINFOS 64

/* struct frame.aux of a FRAME_PERL frame. */
#define PL_AUX_LINE_MASK 0xffff      /* cop_line (0xffff: at least that; the agent reads the COP) */
#define PL_AUX_KIND_SHIFT 16         /* CXt_* of the context (4 bits; 0 for the main program) */
#define PL_AUX_TRY (1u << 20)        /* an eval context of try {} (CXp_TRY) */
#define PL_AUX_FROM_C (1u << 21)     /* a sub or eval whose retop is NULL: entered from C */
#define PL_AUX_ID_IS_CV (1u << 22)   /* id is the sub's or eval's CV, not a GV */
#define PL_AUX_REQUIRE (1u << 23)    /* an eval context run by require/use */
/* Walk events met since the previous (inner) frame, 2 bits each, saturating: call_sv(G_EVAL) scopes of
 * the inner stackinfo, runlevels C pushed (stackinfos ended), call_sv(G_EVAL) scopes after them. */
#define PL_AUX_CEVALS_IN_SHIFT 24
#define PL_AUX_RUNLEVELS_SHIFT 26
#define PL_AUX_CEVALS_OUT_SHIFT 28
#define PL_AUX_MAIN (1u << 31)       /* the main program (the bottom of PL_curinterp's PERLSI_MAIN) */
#define PL_CXp_TRY 0x80

struct perl_proc_info {
	__u64 tpoff_got;        /* runtime address of the TPOFF64 GOT slot of PL_current_context, or 0 */
	__u64 module_got;       /* runtime address of the DTPMOD64 GOT slot (libperl.so), or 0 */
	__u64 tls_offset;       /* PL_current_context's offset in the module's TLS block */
	__u64 curinterp;        /* runtime address of PL_curinterp */
	__u16 interp_curcop;    /* struct interpreter.Icurcop */
	__u16 interp_curstackinfo; /* .Icurstackinfo */
	__u8 si_cxstack;        /* struct stackinfo.si_cxstack */
	__u8 si_prev;           /* .si_prev */
	__u8 si_cxix;           /* .si_cxix (s32) */
	__u8 cx_size;           /* sizeof(PERL_CONTEXT) */
	__u8 cx_type;           /* struct block.blku_type */
	__u8 cx_u16;            /* .blku_u16 */
	__u8 cx_oldcop;         /* .blku_oldcop */
	__u8 cx_sub_retop;      /* .blk_u.blku_sub.retop */
	__u8 cx_sub_cv;         /* .blk_u.blku_sub.cv */
	__u8 cx_eval_retop;     /* .blk_u.blku_eval.retop */
	__u8 cx_eval_cv;        /* .blk_u.blku_eval.cv */
	__u8 cop_line;          /* struct cop.cop_line */
	__u8 sv_any;            /* SV head: body pointer */
	__u8 sv_u;              /* SV head: union (a GV's GP) */
	__u8 xcv_gv;            /* XPVCV.xcv_gv_u */
	__u8 xcv_flags;         /* XPVCV.xcv_flags */
	__u8 gp_egv;            /* struct gp.gp_egv */
	__u8 reserved0[3];
	__u16 version;          /* major << 8 | minor, for the agent's own accounting */
	__u16 reserved1;
};                              /* 56 bytes */

#endif
