/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel V8 frame step: names the JavaScript function of one frame, then unwinds it by its frame
 * pointer (v8_offsets.h says how). The native unwinder calls it for a pc in node's embedded builtins
 * (`interp_ranges`, kind INTERP_V8) or in anonymous memory of a process in `v8_procs` (JIT code); it says
 * V8_NOT_JS when the frame is not a JavaScript one, and the native unwinder goes on as before.
 * Included by tracer/bpf/sampler.bpf.c after the shared maps and helpers.
 */
#ifndef FLEETPROF_V8_UNWIND_BPF_H
#define FLEETPROF_V8_UNWIND_BPF_H

#include "v8_offsets.h"

#define V8_NOT_JS 2 /* v8_step: not a JavaScript frame (no frame emitted, nothing changed) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct v8_proc_info);
} v8_procs SEC(".maps");

static __always_inline bool v8_heap_object(__u64 value)
{
	return (value & V8_HEAP_OBJECT_TAG_MASK) == V8_HEAP_OBJECT_TAG && value > 4096;
}

/* The instance type of a tagged heap object, or -1. */
static __always_inline int v8_type(struct v8_proc_info *info, __u64 object)
{
	__u64 map = 0;
	__u16 type = 0;
	if (!v8_heap_object(object) || bpf_probe_read_user(&map, sizeof(map), (void *)(object - 1)))
		return -1;
	if (!v8_heap_object(map) || bpf_probe_read_user(&type, sizeof(type), (void *)(map - 1 + info->map_instance_type)))
		return -1;
	return type;
}

/* One frame at st->pc (V8 code: `jit` anonymous memory, else the builtins) with frame pointer st->fp:
 * FRAME_V8 and the caller, or V8_NOT_JS. Returns as a loop step does (0: go on, 1: the stack ended)
 * otherwise. */
__noinline long v8_step(struct sample *s, struct unwind_state *st, __u8 fflags, bool jit)
{
	if (!s || !st)
		return 1;
	struct v8_proc_info *info = bpf_map_lookup_elem(&v8_procs, &st->pid);
	__u64 fp = st->fp;
	if (!info || fp < st->sp || (fp & 7))
		return V8_NOT_JS;
	__u64 marker = 0, function = 0;
	if (bpf_probe_read_user(&marker, sizeof(marker), (void *)(fp + info->fp_marker)) || !(marker & 1))
		return V8_NOT_JS; /* a typed frame: its marker is a Smi */
	if (bpf_probe_read_user(&function, sizeof(function), (void *)(fp + info->fp_function)))
		return V8_NOT_JS;
	int type = v8_type(info, function);
	if (type < info->jsfunction_first_type || type >= info->jsfunction_end_type)
		return V8_NOT_JS;
	__u64 shared = 0, code = 0;
	if (bpf_probe_read_user(&shared, sizeof(shared), (void *)(function - 1 + info->jsfunction_shared)) ||
	    !v8_heap_object(shared))
		return V8_NOT_JS;

	__u64 pc = st->pc - (st->return_address ? 1 : 0);
	__u64 entry = 0;
	__u32 size = 0, flags = 0;
	bool have_code =
		info->jsfunction_code &&
		!bpf_probe_read_user(&code, sizeof(code), (void *)(function - 1 + info->jsfunction_code)) &&
		v8_heap_object(code) &&
		(info->code_header ? (entry = code - 1 + info->code_header, true)
				   : !bpf_probe_read_user(&entry, sizeof(entry), (void *)(code - 1 + info->code_entry))) &&
		!bpf_probe_read_user(&size, sizeof(size), (void *)(code - 1 + info->code_size));
	bool builtins = !jit;
	/* V8 (11.x on) remaps the embedded builtins into its code range: a pc there is seen as JIT code until
	 * the agent maps that copy. An interpreted function's Code is the builtin InterpreterEntryTrampoline,
	 * whose entry sits trampoline_offset into the copy: a pc within builtins_size of the copy's start is the
	 * builtins' (the interpreter's handlers, its trampoline) */
	if (jit && have_code && info->builtins_size && !info->code_header &&
	    !bpf_probe_read_user(&flags, sizeof(flags), (void *)(code - 1 + info->code_flags)) &&
	    (flags & V8_CODE_KIND_MASK) == V8_CODE_KIND_BUILTIN &&
	    pc - (entry - info->trampoline_offset) < info->builtins_size)
		builtins = true;
	__u64 addr = builtins ? 0 : st->pc; /* V8_FRAME_FUNCTION: a JIT pc, for userspace to find its code */
	__u32 aux = V8_FRAME_FUNCTION;
	__u64 slots[2] = {}; /* fp_bytecode_offset, fp_bytecode_array: adjacent, offset below */
	__s64 offset = -1;
	if (info->fp_bytecode_array == info->fp_bytecode_offset + 8 &&
	    !bpf_probe_read_user(slots, sizeof(slots), (void *)(fp + info->fp_bytecode_offset)) &&
	    !(slots[0] & 1) && v8_type(info, slots[1]) == info->bytecode_array_type) {
		/* the interpreter's slots (baseline frames keep the feedback vector in the offset slot; code
		 * replacing an interpreted frame on the stack keeps them: a JIT pc is taken for the interpreter only
		 * where it is in the builtins, or userspace finds no JIT code there) */
		offset = (__s64)slots[0] >> V8_SMI_SHIFT;
		__u64 live = 0, length = 0;
		if (!st->return_address && st->regs_live && live_gpr(st, info->offset_register, &live) &&
		    !bpf_probe_read_user(&length, sizeof(length), (void *)(slots[1] - 1 + 8)) &&
		    live >= info->bytecode_header - V8_HEAP_OBJECT_TAG &&
		    live - (info->bytecode_header - V8_HEAP_OBJECT_TAG) < (length >> V8_SMI_SHIFT))
			offset = (__s64)live; /* the interrupted frame: the slot is written only at calls */
		offset -= info->bytecode_header - V8_HEAP_OBJECT_TAG;
	}
	if (offset >= 0 && builtins) {
		addr = (__u64)offset;
		aux = V8_FRAME_INTERPRETED;
	} else if (offset >= 0 && !info->jsfunction_code && offset < (1 << 27)) {
		aux = V8_FRAME_JIT_INTERPRETED | (__u32)offset << V8_AUX_SHIFT; /* addr: the pc */
	} else if (have_code && pc >= entry && pc < entry + size) {
		addr = code;
		aux = V8_FRAME_CODE | (__u32)(pc - entry) << V8_AUX_SHIFT;
	}
	if (!push_frame(s, shared, addr, aux, FRAME_V8, fflags))
		return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
	count(STAT_V8_FRAMES);
	long done = frame_pointer_step(s, st, UNWIND_ERR_FRAME_POINTER, true);
	/* V8 keeps a frame record in every frame: the caller's pc is as good as one a table gave, so code whose
	 * table is not loaded yet waits for it (deferral) instead of being walked by frame pointers */
	st->via_frame_pointer = 0;
	return done;
}

#endif
