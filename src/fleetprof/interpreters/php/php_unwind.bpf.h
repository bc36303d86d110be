/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel PHP (Zend engine) walker: one PHP frame per step of the unwind loop.
 *
 * The native unwinder hands over when its pc is inside execute_ex (`interp_ranges`, kind INTERP_PHP), or in
 * opcache's JIT buffer (php_jit_step: unwound as execute_ex, whose frame JIT'd code runs on); this
 * walker emits the PHP frames that execute_ex call runs (down to the frame entered from C, PHP_CALL_TOP) and
 * hands back, so native frames between them (zend_call_function, array_map's C code...) stay in place.
 * Offsets come from userspace (struct php_proc_info, php_offsets.h); nothing is symbolized here: a frame is
 * the zend_function address, the line and a cookie, named by the agent from process memory. A forked child
 * the agent has not scanned (an FPM worker) is walked with its parent's info, as its mappings are.
 * Included by tracer/bpf/sampler.bpf.c after the shared maps and helpers.
 */
#ifndef FLEETPROF_PHP_UNWIND_BPF_H
#define FLEETPROF_PHP_UNWIND_BPF_H

#include "php_offsets.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct php_proc_info);
} php_procs SEC(".maps");

/* The process's info; a forked child not scanned yet (FPM's workers, forked by the master) unwinds with its
 * parent's mappings, and EG (and the JIT buffer) lie at the same addresses in its copy of the parent's memory. */
static __always_inline struct php_proc_info *php_info(struct unwind_state *st)
{
	struct php_proc_info *info = bpf_map_lookup_elem(&php_procs, &st->pid);
	if (!info && st->lpm_pid && st->lpm_pid != st->pid)
		info = bpf_map_lookup_elem(&php_procs, &st->lpm_pid);
	return info;
}

#define PHP_VM_EXEC 0x4
#define PHP_VM_SHARED 0x8
#define PHP_JIT_PROBE_GAP 8 /* ~8 ms (ns >> 20) between one process's vma lookups for its JIT buffer */

struct php_jit_vma {
	__u64 start;
	__u64 end;
	__u64 flags;
};

static long php_jit_vma_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct php_jit_vma *out = data;
	out->start = BPF_CORE_READ(vma, vm_start);
	out->end = BPF_CORE_READ(vma, vm_end);
	out->flags = BPF_CORE_READ(vma, vm_flags);
	return 0;
}

/* A pc in opcache's JIT buffer: JIT'd code runs on execute_ex's frame (HYBRID VM), so unwind it as execute_ex
 * at its dispatch jump (the PHP walker enters there, then execute_ex's CFA rule applies); the loop goes on
 * with the new pc (0). JIT_NONE when the pc is not PHP's JIT code. While the agent has not told where the
 * buffer is (opcache makes it after the exec the process was registered at), an anonymous pc's vma is looked
 * at (this sample's one lookup, at most every ~8 ms per process): executable and shared is opcache's. */
__noinline long php_jit_step(struct unwind_state *st)
{
	if (!st)
		return JIT_NONE;
	struct php_proc_info *info = php_info(st);
	if (!info || !info->jit_dispatch)
		return JIT_NONE;
	__u64 pc = st->pc;
	if (pc >= info->jit_start && pc < info->jit_end) {
		st->pc = info->jit_dispatch;
		return 0;
	}
	__u32 now = (__u32)(bpf_ktime_get_ns() >> 20);
	if (info->jit_end || st->vma_probed || now - info->jit_probed < PHP_JIT_PROBE_GAP)
		return JIT_NONE;
	info->jit_probed = now;
	st->vma_probed = 1;
	struct php_jit_vma vma = {0, 0, 0};
	if (bpf_find_vma(bpf_get_current_task_btf(), pc, php_jit_vma_cb, &vma, 0))
		return JIT_NONE;
	if ((vma.flags & (PHP_VM_EXEC | PHP_VM_SHARED)) != (PHP_VM_EXEC | PHP_VM_SHARED) || pc < vma.start ||
	    pc >= vma.end)
		return JIT_NONE;
	info->jit_start = vma.start;
	info->jit_end = vma.end;
	st->pc = info->jit_dispatch;
	return 0;
}

static __always_inline long php_fail(struct sample *s, struct unwind_state *st)
{
	if (st->mode == MODE_PHP_TAIL) { /* the sample keeps UNWIND_ERR_NOT_READY, with the frames walked */
		st->next = NEXT_SUBMIT;
		return 1;
	}
	stop(s, st, UNWIND_ERR_PHP);
	return 1;
}

/* One step of the PHP walker: emit (at most) one frame, or hand back to the native unwinder. After a
 * deferral (MODE_PHP_TAIL) it walks on to the last frame, flagging each TAIL and each execute_ex call's
 * last CALL_END, for the agent's replay. */
__noinline long php_step(struct sample *s, struct unwind_state *st)
{
	if (!s || !st)
		return 1;
	bool tail = st->mode == MODE_PHP_TAIL;
	struct php_proc_info *info = php_info(st);
	if (!info) {
		st->mode = MODE_NATIVE; /* not registered (yet): keep the native frames */
		return tail ? stack_complete(st) : 0;
	}
	bool ok = true;
	if (!st->php_started) {
		st->php_started = 1;
		st->php_ex = read_u64(info->current_execute_data, &ok);
		if (!ok)
			return php_fail(s, st);
	}
	__u64 ex = st->php_ex;
	if (!ex) {
		if (tail) {
			tail_call_end(s);
			return stack_complete(st);
		}
		st->mode = MODE_NATIVE; /* no PHP frame left for this execute_ex call */
		return 0;
	}
	__u64 func = read_u64(ex + info->ex_func, &ok);
	__u64 prev = read_u64(ex + info->ex_prev, &ok);
	if (!ok || prev == ex)
		return php_fail(s, st);
	st->php_ex = prev;
	if (!func)
		return 0; /* a dummy frame: no function to show */
	__u64 head[3] = {0, 0, 0}; /* type (first byte), function_name, scope */
	if (bpf_probe_read_user(&head[0], 1, (void *)(func + info->fn_type)))
		return php_fail(s, st);
	__u8 type = (__u8)head[0];
	if (type != PHP_FN_INTERNAL && type != PHP_FN_USER && type != PHP_FN_EVAL)
		return php_fail(s, st);
	head[1] = read_u64(func + info->fn_name, &ok);
	head[2] = read_u64(func + info->fn_scope, &ok);
	__u32 call_info = 0;
	if (bpf_probe_read_user(&call_info, sizeof(call_info), (void *)(ex + info->ex_call_info)))
		ok = false;
	__u32 line = 0;
	if (type != PHP_FN_INTERNAL) {
		__u64 opline = read_u64(ex + info->ex_opline, &ok);
		if (opline && bpf_probe_read_user(&line, sizeof(line), (void *)(opline + info->op_lineno)))
			line = 0;
	}
	if (!ok)
		return php_fail(s, st);
	__u32 cookie = php_func_cookie(head[1], head[2], type);
	if (!push_frame(s, func, line, cookie, FRAME_PHP, tail ? FRAME_FLAG_TAIL : 0)) {
		if (tail)
			return stack_complete(st);
		stop(s, st, UNWIND_ERR_DEPTH_LIMIT);
		return 1;
	}
	st->interp_emitted = 1;
	if (call_info & PHP_CALL_TOP) {
		if (tail)
			tail_call_end(s);
		else
			st->mode = MODE_NATIVE; /* entered from C: the native frames under this execute_ex come next */
	}
	return 0;
}

#endif
