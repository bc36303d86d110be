/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel HotSpot frame step: one Java frame (interpreted, compiled, or a VM stub) from the JVM's code
 * cache, then its caller (hotspot_offsets.h says how). The native unwinder calls it for a pc in anonymous
 * memory of a process in `hotspot_procs`; HS_NOT_JAVA means the pc is in no code blob, and the native
 * unwinder goes on as before. Included by tracer/bpf/sampler.bpf.c after the shared maps and helpers.
 */
#ifndef FLEETPROF_HOTSPOT_UNWIND_BPF_H
#define FLEETPROF_HOTSPOT_UNWIND_BPF_H

#include "hotspot_offsets.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct hotspot_proc_info);
} hotspot_procs SEC(".maps");

/* The CodeBlob holding pc, 0 when none (outside the heaps, a free block, an unreadable map). */
static __always_inline __u64 hs_find_blob(struct hotspot_proc_info *info, __u64 pc)
{
	for (int h = 0; h < HS_MAX_HEAPS; h++) {
		if (h >= info->heap_count || pc < info->heap_low[h] || pc >= info->heap_high[h])
			continue;
		__u8 log2 = info->log2_segment[h] & 31;
		__u64 index = (pc - info->heap_low[h]) >> log2;
		for (int hop = 0; hop < HS_MAX_HOPS; hop++) {
			__u8 tag = HS_SEGMAP_FREE;
			if (bpf_probe_read_user(&tag, 1, (void *)(info->segmap[h] + index)) || tag == HS_SEGMAP_FREE)
				return 0;
			if (tag == 0) {
				__u64 block = info->heap_low[h] + (index << log2);
				return block + info->heapblock_size;
			}
			if (tag > index)
				return 0;
			index -= tag;
		}
		return 0;
	}
	return 0;
}

/* One Java frame at st->pc, or HS_NOT_JAVA. Returns as a loop step does (0: go on, 1: the stack ended). */
__noinline long hotspot_step(struct sample *s, struct unwind_state *st, __u8 fflags)
{
	if (!s || !st)
		return 1;
	struct hotspot_proc_info *info = bpf_map_lookup_elem(&hotspot_procs, &st->pid);
	if (!info)
		return HS_NOT_JAVA;
	__u64 pc = st->pc;
	__u64 blob = hs_find_blob(info, pc - (st->return_address ? 1 : 0));
	if (!blob)
		return HS_NOT_JAVA;
	__u64 fp = st->fp;
	if (blob == info->interpreter) {
		__u64 method = 0, bcp = 0, const_method = 0, sender_sp = 0;
		if (fp < st->sp || (fp & 7) ||
		    bpf_probe_read_user(&method, sizeof(method), (void *)(fp + info->fp_method * 8)) ||
		    bpf_probe_read_user(&sender_sp, sizeof(sender_sp), (void *)(fp + info->fp_sender_sp * 8)))
			return fail(s, st, UNWIND_ERR_JVM);
		if (!(st->regs_live && live_gpr(st, 13, &bcp)) &&
		    bpf_probe_read_user(&bcp, sizeof(bcp), (void *)(fp + info->fp_bcp * 8)))
			return fail(s, st, UNWIND_ERR_JVM);
		__u64 bci = 0;
		if (method && !bpf_probe_read_user(&const_method, sizeof(const_method),
						   (void *)(method + info->method_const_method))) {
			__u64 code = const_method + info->constmethod_size;
			bci = bcp >= code && bcp - code < 0x10000 ? bcp - code : 0;
		}
		if (!push_frame(s, method, bci, JVM_FRAME_INTERPRETED, FRAME_JVM, fflags))
			return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
		count(STAT_JVM_FRAMES);
		__u64 frame[2];
		if (bpf_probe_read_user(frame, sizeof(frame), (void *)fp))
			return fail(s, st, UNWIND_ERR_JVM);
		st->fp = frame[0];
		st->pc = frame[1];
		st->sp = sender_sp > fp ? sender_sp : fp + 16;
		st->return_address = 1;
		st->via_frame_pointer = 0;
		st->regs_live = 0;
		st->rbx_valid = 0;
		return st->pc ? 0 : stack_complete(st);
	}

	__s32 compile_id = 0;
	bpf_probe_read_user(&compile_id, sizeof(compile_id), (void *)(blob + info->nmethod_compile_id));
	__u32 aux = JVM_FRAME_COMPILED | (st->return_address ? 0 : JVM_AUX_TOP) |
		    ((__u32)compile_id & JVM_AUX_COOKIE_MASK) << JVM_AUX_COOKIE_SHIFT;
	if (!push_frame(s, blob, pc, aux, FRAME_JVM, fflags))
		return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
	count(STAT_JVM_FRAMES);
	__s32 words = 0, complete = 0;
	__u64 code = 0;
	bpf_probe_read_user(&words, sizeof(words), (void *)(blob + info->blob_frame_size));
	if (info->flags & HS_COMPLETE_16) {
		__s16 short_complete = 0;
		bpf_probe_read_user(&short_complete, sizeof(short_complete), (void *)(blob + info->blob_frame_complete));
		complete = short_complete;
	} else {
		bpf_probe_read_user(&complete, sizeof(complete), (void *)(blob + info->blob_frame_complete));
	}
	if (info->flags & HS_CODE_AS_OFFSET) {
		__s32 offset = 0;
		bpf_probe_read_user(&offset, sizeof(offset), (void *)(blob + info->blob_code_begin));
		code = blob + offset;
	} else {
		bpf_probe_read_user(&code, sizeof(code), (void *)(blob + info->blob_code_begin));
	}
	if (words <= 0 || words > 0x10000)
		return frame_pointer_step(s, st, UNWIND_ERR_JVM, true); /* a stub with an rbp frame */
	__u64 caller_sp, slots[2];
	if (!st->return_address && complete > 0 && pc < code + complete) {
		/* interrupted in the prologue: the frame is not built, the return address is on top */
		if (bpf_probe_read_user(&slots[1], sizeof(slots[1]), (void *)st->sp))
			return fail(s, st, UNWIND_ERR_JVM);
		slots[0] = st->fp;
		caller_sp = st->sp + 8;
	} else {
		caller_sp = st->sp + (__u64)words * 8;
		if (bpf_probe_read_user(slots, sizeof(slots), (void *)(caller_sp - 16)))
			return fail(s, st, UNWIND_ERR_JVM);
	}
	st->fp = slots[0];
	st->pc = slots[1];
	st->sp = caller_sp;
	st->return_address = 1;
	st->via_frame_pointer = 0;
	st->regs_live = 0;
	st->rbx_valid = 0;
	return st->pc ? 0 : stack_complete(st);
}

#endif
