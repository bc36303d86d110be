/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel CRuby walker: one control frame per step of the unwind loop.
 *
 * The native unwinder hands over when its pc is inside rb_vm_exec (`interp_ranges`, kind INTERP_RUBY); this
 * walker emits the Ruby frames that VM loop runs, down to the frame entered from C (RB_FRAME_FINISH), and
 * hands back, so native frames between them (Array#sort's C code, a C extension) stay in place. The thread's
 * execution context comes from libruby's thread-local `ruby_current_ec`, found through the thread's own
 * fs base. Offsets come from userspace (struct ruby_proc_info, ruby_offsets.h); nothing is named here.
 * Included by tracer/bpf/sampler.bpf.c after the shared maps and helpers.
 */
#ifndef FLEETPROF_RUBY_UNWIND_BPF_H
#define FLEETPROF_RUBY_UNWIND_BPF_H

#include "ruby_offsets.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct ruby_proc_info);
} ruby_procs SEC(".maps");

/* A Ruby heap object's imemo type, or -1 (an immediate, another type, unreadable memory). */
static __always_inline int rb_imemo_type(__u64 value)
{
	__u64 flags = 0;
	if (!value || (value & 7) || bpf_probe_read_user(&flags, sizeof(flags), (void *)value))
		return -1;
	if ((flags & RB_T_MASK) != RB_T_IMEMO)
		return -1;
	return (flags >> RB_FL_USHIFT) & RB_IMEMO_MASK;
}

/* The method entry of the frame whose environment is `ep` (rb_vm_frame_method_entry), 0 when it has none;
 * `flags` gets the frame's own flags (ep[0]). False on unreadable memory. */
static __noinline bool rb_method_entry(struct ruby_proc_info *info, __u64 ep, __u64 *entry, __u64 *flags)
{
	__u64 env[3]; /* ep[-2] me/cref, ep[-1] specval, ep[0] flags */
	if (!info || !entry || !flags || bpf_probe_read_user(env, sizeof(env), (void *)(ep - 16)))
		return false;
	*flags = env[2];
	*entry = 0;
	for (int i = 0; i < RB_MAX_EP_HOPS; i++) {
		bool local = env[2] & RB_ENV_LOCAL;
		int kind = rb_imemo_type(env[0]);
		if (kind == RB_IMEMO_MENT) {
			*entry = env[0];
			return true;
		}
		if (kind == RB_IMEMO_SVAR && local) {
			__u64 inner = 0;
			if (bpf_probe_read_user(&inner, sizeof(inner), (void *)(env[0] + info->svar_cref_or_me)))
				return false;
			if (rb_imemo_type(inner) == RB_IMEMO_MENT)
				*entry = inner;
			return true;
		}
		if (local)
			return true;
		__u64 prev = env[1] & ~3ULL;
		if (!prev || bpf_probe_read_user(env, sizeof(env), (void *)(prev - 16)))
			return false;
	}
	return true;
}

/* The thread's execution context through libruby's TLS block (0: not a Ruby thread, or TLS not set up). */
/* A pointer-sized `__thread` variable of a shared library, in the thread whose fs base is `tp`: the
 * library's module id (its DTPMOD64 GOT slot at `module_got`) indexes the thread's DTV, whose entry is the
 * TLS block the variable sits `offset` into (0: not set up in this thread). Shared with the Perl walker. */
static __always_inline __u64 dtv_tls_value(__u64 tp, __u64 module_got, __u64 offset)
{
	bool ok = true;
	__u64 module = read_u64(module_got, &ok);
	__u64 dtv = read_u64(tp + RB_TCB_DTV, &ok);
	if (!ok || !module || !dtv || module > 4096)
		return 0;
	__u64 block = read_u64(dtv + module * RB_DTV_ENTRY, &ok);
	if (!ok || !block || block == ~0ULL)
		return 0;
	__u64 value = read_u64(block + offset, &ok);
	return ok ? value : 0;
}

static __always_inline __u64 rb_current_ec(struct ruby_proc_info *info)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return dtv_tls_value(BPF_CORE_READ(task, thread.fsbase), info->module_got, info->tls_offset);
}

static __always_inline long rb_fail(struct sample *s, struct unwind_state *st)
{
	if (st->mode == MODE_RUBY_TAIL) /* the sample keeps UNWIND_ERR_NOT_READY, with the frames walked */
		return stack_complete(st);
	stop(s, st, UNWIND_ERR_RUBY);
	return 1;
}

/* One step of the Ruby walker: one control frame (emitting at most one frame), or hand back. After a
 * deferral (MODE_RUBY_TAIL) it walks on to the last frame, flagging each TAIL and each rb_vm_exec call's
 * last CALL_END, for the agent's replay. */
__noinline long ruby_step(struct sample *s, struct unwind_state *st)
{
	if (!s || !st)
		return 1;
	bool tail = st->mode == MODE_RUBY_TAIL;
	struct ruby_proc_info *info = bpf_map_lookup_elem(&ruby_procs, &st->pid);
	if (!info) {
		st->mode = MODE_NATIVE; /* not registered (yet): keep the native frames */
		return tail ? stack_complete(st) : 0;
	}
	bool ok = true;
	if (!st->rb_started) {
		st->rb_started = 1;
		st->rb_cfp = 0;
		__u64 ec = rb_current_ec(info);
		if (ec) {
			__u64 stack = read_u64(ec + info->ec_vm_stack, &ok);
			__u64 size = read_u64(ec + info->ec_vm_stack_size, &ok);
			__u64 cfp = read_u64(ec + info->ec_cfp, &ok);
			if (!ok || !stack || size > (1ULL << 28) || cfp <= stack || cfp > stack + size * 8)
				return rb_fail(s, st);
			st->rb_cfp = cfp;
			st->rb_end = stack + size * 8;
		}
	}
	__u64 cfp = st->rb_cfp;
	if (!cfp || cfp + info->cfp_size > st->rb_end) {
		if (tail) {
			tail_call_end(s);
			return stack_complete(st);
		}
		st->mode = MODE_NATIVE; /* no Ruby frame left for this VM loop */
		return 0;
	}
	st->rb_cfp = cfp + info->cfp_size;
	__u64 pc = read_u64(cfp + info->cfp_pc, &ok);
	__u64 iseq = read_u64(cfp + info->cfp_iseq, &ok);
	__u64 ep = read_u64(cfp + info->cfp_ep, &ok);
	__u64 entry = 0, flags = 0;
	if (!ok || !rb_method_entry(info, ep, &entry, &flags))
		return rb_fail(s, st);
	if ((flags & RB_FRAME_MAGIC_MASK) == RB_FRAME_MAGIC_DUMMY)
		return 0; /* pushed below user code (ruby_exec_node, a thread's start): no Ruby frame */
	__u8 type = 0xff;
	if (entry) {
		__u64 def = read_u64(entry + info->me_def, &ok);
		if (!ok || !def || bpf_probe_read_user(&type, 1, (void *)def))
			return rb_fail(s, st);
		type &= 0xf;
	}
	bool pushed;
	__u8 fflags = tail ? FRAME_FLAG_TAIL : 0;
	if (!(flags & RB_FRAME_CFRAME)) {
		if (!iseq)
			return rb_fail(s, st);
		pushed = push_frame(s, iseq, type == RB_METHOD_ISEQ ? entry : 0, (__u32)pc, FRAME_RUBY, fflags);
	} else if (type == RB_METHOD_CFUNC) {
		pushed = push_frame(s, 0, entry, 0, FRAME_RUBY, fflags);
	} else {
		return 0; /* a C frame with no C method (IFUNC...): not shown */
	}
	if (!pushed) {
		if (tail)
			return stack_complete(st);
		stop(s, st, UNWIND_ERR_DEPTH_LIMIT);
		return 1;
	}
	st->interp_emitted = 1;
	if (flags & RB_FRAME_FINISH) {
		if (tail)
			tail_call_end(s);
		else
			st->mode = MODE_NATIVE; /* entered from C: the native frames under this rb_vm_exec come next */
	}
	return 0;
}

#endif
