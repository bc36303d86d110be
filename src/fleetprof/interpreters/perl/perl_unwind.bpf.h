/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel Perl walker: one context per step of the unwind loop.
 *
 * The native unwinder hands over when its pc is inside a runops loop (`interp_ranges`, kind INTERP_PERL);
 * at the innermost one this walker emits all of the thread's Perl frames (Perl subs called from Perl share
 * one runops loop, and where C started another can only be told from the outermost frame in), each
 * carrying the events the agent needs to give every runops native frame its own frames
 * (agent/perl.py). Outer runops frames stay native frames. Offsets come from userspace (struct
 * perl_proc_info, perl_offsets.h); nothing is named here. Included by tracer/bpf/sampler.bpf.c.
 */
#ifndef FLEETPROF_PERL_UNWIND_BPF_H
#define FLEETPROF_PERL_UNWIND_BPF_H

#include "perl_offsets.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct perl_proc_info);
} perl_procs SEC(".maps");

/* The running thread's interpreter (PL_current_context), 0 when it has none. */
static __always_inline __u64 pl_interp(struct perl_proc_info *info)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 tp = BPF_CORE_READ(task, thread.fsbase);
	bool ok = true;
	if (info->tpoff_got) {
		__s64 off = (__s64)read_u64(info->tpoff_got, &ok);
		__u64 interp = ok ? read_u64(tp + off, &ok) : 0;
		return ok ? interp : 0;
	}
	return dtv_tls_value(tp, info->module_got, info->tls_offset);
}

/* Move the cursor to stackinfo `si`; false on unreadable memory. */
static __always_inline bool pl_load_si(struct perl_proc_info *info, struct unwind_state *st, __u64 si)
{
	bool ok = true;
	__s32 cxix = -1;
	st->pl_cxstack = read_u64(si + info->si_cxstack, &ok);
	st->pl_prev = read_u64(si + info->si_prev, &ok);
	if (!ok || bpf_probe_read_user(&cxix, sizeof(cxix), (void *)(si + info->si_cxix)))
		return false;
	st->pl_cx = cxix;
	st->pl_si_had_cx = cxix >= 0;
	return true;
}

/* Append one Perl frame at the cursor's COP, with the events met since the previous frame (flagged TAIL
 * after a deferral). */
static __always_inline bool pl_emit(struct sample *s, struct unwind_state *st, struct perl_proc_info *info,
				    __u64 id, __u32 flags)
{
	__u8 fflags = st->mode == MODE_PERL_TAIL ? FRAME_FLAG_TAIL : 0;
	__u32 line = 0;
	if (st->pl_cop)
		bpf_probe_read_user(&line, sizeof(line), (void *)(st->pl_cop + info->cop_line));
	if (line > PL_AUX_LINE_MASK)
		line = PL_AUX_LINE_MASK;
	__u32 runlevels = st->pl_runlevels > 3 ? 3 : st->pl_runlevels;
	__u32 cevals_in = st->pl_cevals_in > 3 ? 3 : st->pl_cevals_in;
	__u32 cevals_out = st->pl_cevals > 3 ? 3 : st->pl_cevals;
	__u32 aux = line | flags | cevals_in << PL_AUX_CEVALS_IN_SHIFT | runlevels << PL_AUX_RUNLEVELS_SHIFT |
		    cevals_out << PL_AUX_CEVALS_OUT_SHIFT;
	st->pl_runlevels = 0;
	st->pl_cevals_in = 0;
	st->pl_cevals = 0;
	st->interp_emitted = 1;
	return push_frame(s, id, st->pl_cop, aux, FRAME_PERL, fflags);
}

static __always_inline long pl_fail(struct sample *s, struct unwind_state *st)
{
	if (st->mode == MODE_PERL_TAIL) /* the sample keeps UNWIND_ERR_NOT_READY, with the frames walked */
		return stack_complete(st);
	stop(s, st, UNWIND_ERR_PERL);
	return 1;
}

/* Every Perl frame is out: back to the native frames, or, after a deferral, the end of the sample (its
 * frames are one call for the agent's replay, which puts them at the innermost runops frame). */
static __always_inline long pl_finished(struct sample *s, struct unwind_state *st)
{
	if (st->mode == MODE_PERL_TAIL) {
		tail_call_end(s);
		return stack_complete(st);
	}
	st->mode = MODE_NATIVE;
	return 0;
}

/* One step of the Perl walker: one context (emitting at most one frame), or hand back. After a deferral
 * (MODE_PERL_TAIL) the frames are flagged TAIL and the last CALL_END, and the sample ends with them. */
__noinline long perl_step(struct sample *s, struct unwind_state *st)
{
	if (!s || !st)
		return 1;
	struct perl_proc_info *info = bpf_map_lookup_elem(&perl_procs, &st->pid);
	if (!info || st->pl_done)
		return pl_finished(s, st); /* not registered, or every frame is out: keep the native frame */
	bool ok = true;
	if (!st->pl_started) {
		st->pl_started = 1;
		__u64 interp = pl_interp(info);
		if (!interp) {
			st->pl_done = 1;
			return pl_finished(s, st); /* not a Perl thread */
		}
		st->pl_main = interp == read_u64(info->curinterp, &ok);
		st->pl_cop = read_u64(interp + info->interp_curcop, &ok);
		__u64 si = read_u64(interp + info->interp_curstackinfo, &ok);
		st->pl_sis = 1;
		if (!ok || !si || !pl_load_si(info, st, si))
			return pl_fail(s, st);
		return 0;
	}
	if (st->pl_cx < 0) { /* this stackinfo is done: the one below, or the main program */
		if (!st->pl_prev) {
			st->pl_done = 1;
			if (st->pl_main && !pl_emit(s, st, info, 0, PL_AUX_MAIN)) {
				if (st->mode == MODE_PERL_TAIL)
					return stack_complete(st);
				stop(s, st, UNWIND_ERR_DEPTH_LIMIT);
				return 1;
			}
			return pl_finished(s, st);
		}
		if (st->pl_si_had_cx)
			st->pl_runlevels++; /* pushed by C, which ran its Perl code in a runops of its own */
		if (++st->pl_sis > PL_MAX_STACKINFOS || !pl_load_si(info, st, st->pl_prev))
			return pl_fail(s, st);
		return 0;
	}
	__u64 cx = st->pl_cxstack + (__u64)(__u32)st->pl_cx * info->cx_size;
	st->pl_cx--;
	__u8 type = 0;
	if (bpf_probe_read_user(&type, 1, (void *)(cx + info->cx_type)))
		return pl_fail(s, st);
	__u8 kind = type & PL_CXTYPEMASK;
	__u64 id = 0;
	__u32 flags = (__u32)kind << PL_AUX_KIND_SHIFT;
	if ((kind == PL_CXt_SUB || kind == PL_CXt_FORMAT) && !(type & PL_CXp_SUB_RE_FAKE)) {
		__u64 cv = read_u64(cx + info->cx_sub_cv, &ok);
		__u64 retop = read_u64(cx + info->cx_sub_retop, &ok);
		__u64 body = cv ? read_u64(cv + info->sv_any, &ok) : 0;
		__u64 gv = body ? read_u64(body + info->xcv_gv, &ok) : 0;
		__u32 cvflags = 0;
		if (!ok || !body || bpf_probe_read_user(&cvflags, sizeof(cvflags), (void *)(body + info->xcv_flags)))
			return pl_fail(s, st);
		if ((cvflags & PL_CVf_NAMED) || !gv) {
			id = cv;
			flags |= PL_AUX_ID_IS_CV;
		} else {
			__u64 gp = read_u64(gv + info->sv_u, &ok);
			__u64 egv = gp ? read_u64(gp + info->gp_egv, &ok) : 0;
			id = ok && egv ? egv : gv;
		}
		if (!retop)
			flags |= PL_AUX_FROM_C;
	} else if (kind == PL_CXt_EVAL) {
		__u64 retop = read_u64(cx + info->cx_eval_retop, &ok);
		if (!ok)
			return pl_fail(s, st);
		if ((type & PL_CXp_EVALBLOCK) && !retop) {
			/* call_sv(G_EVAL)'s scope: no Perl code of its own */
			if (st->pl_runlevels)
				st->pl_cevals++;
			else
				st->pl_cevals_in++;
			return 0;
		}
		__u16 u16 = 0;
		bpf_probe_read_user(&u16, sizeof(u16), (void *)(cx + info->cx_u16));
		id = read_u64(cx + info->cx_eval_cv, &ok);
		flags |= PL_AUX_ID_IS_CV | ((u16 >> 7) == PL_OP_REQUIRE ? PL_AUX_REQUIRE : 0) |
			 (retop ? 0 : PL_AUX_FROM_C) | (type & PL_CXp_TRY ? PL_AUX_TRY : 0);
	} else {
		return 0; /* loops, blocks, a sort block's CXt_NULL: no frame */
	}
	if (!pl_emit(s, st, info, id, flags)) {
		if (st->mode == MODE_PERL_TAIL)
			return stack_complete(st);
		stop(s, st, UNWIND_ERR_DEPTH_LIMIT);
		return 1;
	}
	st->pl_cop = read_u64(cx + info->cx_oldcop, &ok);
	return 0;
}

#endif
