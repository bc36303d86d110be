/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel native unwinder: one user frame per bpf_loop iteration.
 *
 * For the pc: find its mapping (pid, address) -> (file id, load bias); binary-search that file's rows of the
 * unwind table (compiled from .eh_frame/.debug_frame by nativeunwind/compiler.py); apply the rule to get the
 * CFA, the return address (CFA - 8) and the caller's rbp. Files without a table use frame pointers.
 * Included by tracer/bpf/sampler.bpf.c, which defines the maps and helpers used here.
 */
#ifndef FLEETPROF_NATIVE_UNWIND_BPF_H
#define FLEETPROF_NATIVE_UNWIND_BPF_H

#define BSEARCH_STEPS 24 /* tables of up to 2^24 rows */

/* Offsets inside the ucontext_t at rsp when the pc is in the signal trampoline (__restore_rt):
 * uc_flags 8 + uc_link 8 + uc_stack 24 = 40 bytes, then struct sigcontext (r8..r15, rdi, rsi, rbp, rbx,
 * rdx, rax, rcx, rsp, rip). */
#define UCONTEXT_MCONTEXT 40
#define SIGCONTEXT_RBP (UCONTEXT_MCONTEXT + 80)
#define SIGCONTEXT_RSP (UCONTEXT_MCONTEXT + 120)
#define SIGCONTEXT_RIP (UCONTEXT_MCONTEXT + 128)

static __always_inline long stack_complete(struct unwind_state *st)
{
	st->next = NEXT_SUBMIT;
	return 1;
}

static __always_inline long fail(struct sample *s, struct unwind_state *st, __u16 error)
{
	stop(s, st, error);
	return 1;
}

/* One frame by the frame-pointer chain; `error` is what a failure is reported as. rbp == 0 marks the
 * outermost frame only when `zero_ends`: when rbp was restored from the stack. The leaf's rbp is the live
 * register, which code without frame pointers uses freely, so there it proves nothing. */
static __always_inline long frame_pointer_step(struct sample *s, struct unwind_state *st, __u16 error,
					       bool zero_ends)
{
	__u64 fp = st->fp;
	__u64 frame[2];

	count(STAT_FP_FRAMES);
	if (fp == 0)
		return zero_ends ? stack_complete(st) : fail(s, st, error);
	if (fp < st->sp || (fp & 7))
		return fail(s, st, error);
	if (bpf_probe_read_user(frame, sizeof(frame), (void *)fp))
		return fail(s, st, error);
	st->fp = frame[0];
	st->pc = frame[1];
	st->sp = fp + 16;
	st->return_address = 1;
	st->via_frame_pointer = 1;
	if (st->pc == 0)
		return stack_complete(st);
	return 0;
}

/* Index of the last row whose pc <= target in rows[start, start + count), or -1. */
static __always_inline long find_row(__u32 start, __u32 count, __u32 target)
{
	__u32 lo = start, n = count;
	for (int i = 0; i < BSEARCH_STEPS; i++) {
		if (n == 0)
			break;
		__u32 half = n / 2;
		__u32 mid = lo + half;
		struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &mid);
		if (!row)
			return -1;
		if (row->pc <= target) {
			lo = mid + 1;
			n -= half + 1;
		} else {
			n = half;
		}
	}
	if (n != 0 || lo == start)
		return -1;
	return lo - 1;
}

static __always_inline bool in_interpreter(__u64 file_id, __u64 elf_pc)
{
	struct interp_ranges *r = bpf_map_lookup_elem(&interp_ranges, &file_id);
	if (!r)
		return false;
	for (int i = 0; i < MAX_INTERP_RANGES; i++) {
		if (elf_pc >= r->start[i] && elf_pc < r->end[i])
			return true;
	}
	return false;
}

static __always_inline long signal_frame_step(struct sample *s, struct unwind_state *st)
{
	__u64 regs[2];
	__u64 rbp;

	count(STAT_SIGNAL_FRAMES);
	if (bpf_probe_read_user(&rbp, sizeof(rbp), (void *)(st->sp + SIGCONTEXT_RBP)) ||
	    bpf_probe_read_user(regs, sizeof(regs), (void *)(st->sp + SIGCONTEXT_RSP)))
		return fail(s, st, UNWIND_ERR_READ_FAILED);
	st->fp = rbp;
	st->sp = regs[0];
	st->pc = regs[1];
	st->return_address = 0; /* the interrupted instruction itself */
	if (st->pc == 0)
		return stack_complete(st);
	return 0;
}

static __always_inline long native_step(struct sample *s, struct unwind_state *st)
{
	__u64 pc = st->pc;
	if (pc == 0)
		return stack_complete(st);

	__u8 fflags = st->return_address ? FRAME_FLAG_RETURN_ADDRESS : 0;
	if (st->resume) {
		/* Back from an interpreter walker. Its frames stand for this eval-loop frame; keep the native frame
		 * only when the walker emitted nothing. */
		st->resume = 0;
		if (!st->interp_emitted) {
			if (!push_frame(s, st->cur_file_id, pc - st->cur_bias, 0, FRAME_NATIVE, fflags))
				return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
			count(STAT_NATIVE_FRAMES);
		}
	} else {
		struct mapping_key key = {.prefixlen = 96, .pid = st->pid, .addr_be = __builtin_bswap64(pc)};
		struct mapping_info *m = bpf_map_lookup_elem(&mappings, &key);
		if (!m) {
			if (!bpf_map_lookup_elem(&known_pids, &st->pid))
				report_pid(EVENT_NEW_PID, st->pid, pc);
			else if (!st->via_frame_pointer)
				report_pid(EVENT_UNKNOWN_PC, st->pid, pc); /* fp-derived pcs may be garbage: no rescans */
			if (!push_frame(s, 0, pc, 0, FRAME_NATIVE_RAW, fflags))
				return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
			/* An unknown pc: trust rbp == 0 only from a frame record (an unscanned process walked
			 * with frame pointers), not from registers or a table step of unknown provenance. */
			return frame_pointer_step(s, st, UNWIND_ERR_NO_MAPPING, st->via_frame_pointer);
		}
		st->cur_file_id = m->file_id;
		st->cur_bias = m->bias;
		st->cur_flags = m->flags;
		if ((st->cur_flags & MAPPING_FLAG_INTERPRETER) && in_interpreter(st->cur_file_id, pc - st->cur_bias)) {
			st->mode = MODE_PYTHON;
			st->resume = 1;
			st->interp_emitted = 0;
			return 0;
		}
		if (!push_frame(s, st->cur_file_id, pc - st->cur_bias, 0, FRAME_NATIVE, fflags))
			return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
		count(STAT_NATIVE_FRAMES);
	}

	__u64 file_id = st->cur_file_id;
	__u64 elf_pc = pc - st->cur_bias;
	__u32 mflags = st->cur_flags;
	if (!(mflags & MAPPING_FLAG_HAS_TABLE) || (mflags & MAPPING_FLAG_FRAME_POINTERS))
		return frame_pointer_step(s, st, UNWIND_ERR_FRAME_POINTER, st->return_address);
	struct file_table *t = bpf_map_lookup_elem(&file_tables, &file_id);
	if (!t)
		return frame_pointer_step(s, st, UNWIND_ERR_FRAME_POINTER, st->return_address); /* table not loaded (yet) */

	__u32 target = (__u32)(elf_pc - (st->return_address ? 1 : 0));
	long ri = find_row(t->start, t->count, target);
	if (ri < 0) /* before the first FDE: code without CFI, try frame pointers */
		return frame_pointer_step(s, st, UNWIND_ERR_NO_TABLE_ENTRY, st->return_address);
	__u32 row_idx = ri;
	struct unwind_row *row = bpf_map_lookup_elem(&unwind_rows, &row_idx);
	if (!row)
		return fail(s, st, UNWIND_ERR_NO_TABLE_ENTRY);
	__u32 rule_idx = row->rule;
	struct unwind_rule *r = bpf_map_lookup_elem(&unwind_rules, &rule_idx);
	if (!r)
		return fail(s, st, UNWIND_ERR_INVALID_RULE);

	__u64 cfa, tmp;
	switch (r->cfa_kind) {
	case UW_CFA_RSP:
		cfa = st->sp + (__s64)r->cfa_off;
		break;
	case UW_CFA_RBP:
		cfa = st->fp + (__s64)r->cfa_off;
		break;
	case UW_CFA_RSP_DEREF:
		if (bpf_probe_read_user(&tmp, sizeof(tmp), (void *)(st->sp + (__s64)r->cfa_off)))
			return fail(s, st, UNWIND_ERR_READ_FAILED);
		cfa = tmp + (__s64)r->cfa_aux;
		break;
	case UW_CFA_RBP_DEREF:
		if (bpf_probe_read_user(&tmp, sizeof(tmp), (void *)(st->fp + (__s64)r->cfa_off)))
			return fail(s, st, UNWIND_ERR_READ_FAILED);
		cfa = tmp + (__s64)r->cfa_aux;
		break;
	case UW_CFA_PLT:
		count(STAT_PLT_FRAMES);
		cfa = st->sp + (__s64)r->cfa_off + ((pc & 15) >= (__u64)r->cfa_aux ? 8 : 0);
		break;
	case UW_CMD_STOP:
		return stack_complete(st);
	case UW_CMD_SIGNAL:
		return signal_frame_step(s, st);
	case UW_CMD_FRAME_POINTER:
		return frame_pointer_step(s, st, UNWIND_ERR_FRAME_POINTER, st->return_address);
	default:
		return fail(s, st, UNWIND_ERR_INVALID_RULE);
	}
	count(STAT_TABLE_FRAMES);

	if (cfa < st->sp + 8)
		return fail(s, st, UNWIND_ERR_BAD_FRAME); /* callers live at higher addresses */
	__u64 ra;
	if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)))
		return fail(s, st, UNWIND_ERR_READ_FAILED);
	if (r->rbp_kind == UW_RBP_AT_CFA || r->rbp_kind == UW_RBP_AT_RBP) {
		__u64 base = r->rbp_kind == UW_RBP_AT_CFA ? cfa : st->fp;
		if (bpf_probe_read_user(&tmp, sizeof(tmp), (void *)(base + (__s64)r->rbp_off)))
			return fail(s, st, UNWIND_ERR_READ_FAILED);
		st->fp = tmp;
	}
	st->sp = cfa;
	st->pc = ra;
	st->return_address = 1;
	st->via_frame_pointer = 0;
	if (ra == 0)
		return stack_complete(st);
	return 0;
}

#endif
