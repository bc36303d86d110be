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

#define PAGE_SHIFT 12

/* The general registers where they are known: the sample's own (the leaf frame) or, after a signal frame,
 * the interrupted code's from its sigcontext. In struct sigcontext's order, so a signal frame's are one read.
 * st->regs_live says whether they still belong to the frame at st->pc (UW_CFA_REG rules need them). */
struct user_gprs {
	__u64 r8, r9, r10, r11, r12, r13, r14, r15, di, si, bp, bx, dx, ax, cx, sp, ip;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct user_gprs);
} user_gprs SEC(".maps");

#define GPR_COUNT (sizeof(struct user_gprs) / sizeof(__u64))

/* Copy the registers of a struct pt_regs (a local copy, or the perf ctx's, read field by field). */
#define FILL_USER_GPRS(g, R)                                                                                \
	do {                                                                                                \
		(g)->r8 = (R).r8; (g)->r9 = (R).r9; (g)->r10 = (R).r10; (g)->r11 = (R).r11;                 \
		(g)->r12 = (R).r12; (g)->r13 = (R).r13; (g)->r14 = (R).r14; (g)->r15 = (R).r15;             \
		(g)->di = (R).di; (g)->si = (R).si; (g)->bp = (R).bp; (g)->bx = (R).bx; (g)->dx = (R).dx;   \
		(g)->ax = (R).ax; (g)->cx = (R).cx; (g)->sp = (R).sp; (g)->ip = (R).ip;                     \
	} while (0)

/* Index in struct user_gprs of DWARF register `reg` (x86-64 numbering), or GPR_COUNT. */
static __always_inline __u32 gpr_index(__u32 reg)
{
	switch (reg) {
	case 0: return 13; /* rax */
	case 1: return 12; /* rdx */
	case 2: return 14; /* rcx */
	case 3: return 11; /* rbx */
	case 4: return 9;  /* rsi */
	case 5: return 8;  /* rdi */
	case 6: return 10; /* rbp */
	case 7: return 15; /* rsp */
	default: return reg >= 8 && reg < 16 ? reg - 8 : GPR_COUNT; /* r8..r15 */
	}
}

/* The value of DWARF register `reg` of the frame at st->pc, when the registers are known for it. */
static __always_inline bool live_gpr(struct unwind_state *st, __u32 reg, __u64 *out)
{
	__u32 zero = 0;
	if (!st->regs_live)
		return false;
	__u64 *g = bpf_map_lookup_elem(&user_gprs, &zero);
	if (!g)
		return false;
	__u32 idx = gpr_index(reg);
	asm volatile("" : "+r"(idx)); /* keep the bound check on the register that indexes */
	if (idx >= GPR_COUNT)
		return false;
	*out = g[idx];
	return true;
}

/* The vma holding an address, read through bpf_find_vma (the kernel's own view of the process). */
struct vma_probe {
	__u64 vm_start;
	__u64 vm_end;
	__u64 vm_pgoff;
	__u64 dev;
	__u64 ino;
	__u64 mtime_ns;
	__u64 has_file;
};

static __always_inline __u64 inode_mtime_ns(struct inode *inode)
{
	if (bpf_core_field_exists(((struct inode___sec *)0)->i_mtime_sec)) {
		struct inode___sec *i = (void *)inode;
		return BPF_CORE_READ(i, i_mtime_sec) * 1000000000ULL + BPF_CORE_READ(i, i_mtime_nsec);
	}
	if (bpf_core_field_exists(((struct inode___priv *)0)->__i_mtime)) {
		struct inode___priv *i = (void *)inode;
		return BPF_CORE_READ(i, __i_mtime.tv_sec) * 1000000000ULL + BPF_CORE_READ(i, __i_mtime.tv_nsec);
	}
	struct inode___old *i = (void *)inode;
	return BPF_CORE_READ(i, i_mtime.tv_sec) * 1000000000ULL + BPF_CORE_READ(i, i_mtime.tv_nsec);
}

/* Where bpf_find_vma's callback leaves what it found, per CPU: slot VMA_SLOT_SAMPLE for the sampler
 * (interrupt context), VMA_SLOT_EXEC for the exec tracepoint (which the sampler may interrupt). Kept off
 * the BPF stack, which the unwinder's loop step already nearly fills. */
#define VMA_SLOT_SAMPLE 0
#define VMA_SLOT_EXEC 1

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct vma_probe);
} vma_scratch SEC(".maps");

/* resolve_unknown's answer (per CPU; only the sampler resolves mappings). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mapping_info);
} vma_mapping_out SEC(".maps");

static __always_inline struct vma_probe *vma_slot(__u32 slot)
{
	return bpf_map_lookup_elem(&vma_scratch, &slot);
}

static long vma_probe_cb(struct task_struct *task, struct vm_area_struct *vma, void *data)
{
	struct vma_probe *p = vma_slot(*(__u32 *)data);
	if (!p)
		return 1;
	p->vm_start = BPF_CORE_READ(vma, vm_start);
	p->vm_end = BPF_CORE_READ(vma, vm_end);
	p->vm_pgoff = BPF_CORE_READ(vma, vm_pgoff);
	struct file *f = BPF_CORE_READ(vma, vm_file);
	if (f) {
		struct inode *inode = BPF_CORE_READ(f, f_inode);
		p->has_file = 1;
		p->ino = BPF_CORE_READ(inode, i_ino);
		p->dev = BPF_CORE_READ(inode, i_sb, s_dev);
		p->mtime_ns = inode_mtime_ns(inode);
	}
	return 0;
}

#define VMA_BUDGET_SPENT (-16) /* -EBUSY: this sample already used its one lookup */
#define VMA_NONE (-2)          /* -ENOENT: no vma holds the address */

/* 0 when `addr` lies in a vma of the current task (`p` filled), else an error (no vma, mmap lock busy).
 * In interrupt context the kernel allows one lookup per sample (the mmap lock is released later by
 * irq_work), so only the first call per sample asks. */
static __always_inline long find_vma_into(struct task_struct *task, __u64 addr, __u32 slot, struct vma_probe *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	return bpf_find_vma(task, addr, vma_probe_cb, &slot, 0);
}

static __always_inline long probe_vma(struct unwind_state *st, __u64 addr, struct vma_probe *p)
{
	if (st->vma_probed) {
		__builtin_memset(p, 0, sizeof(*p));
		return VMA_BUDGET_SPENT;
	}
	st->vma_probed = 1;
	return find_vma_into(bpf_get_current_task_btf(), addr, VMA_SLOT_SAMPLE, p);
}

/* The mapping of a file-backed vma (its start, file offset in pages, and the file's inode identity) from
 * `file_inodes`, when the agent knows the file. */
static __always_inline bool mapping_from_inode(__u64 vm_start, __u64 vm_pgoff, struct inode_key *ik,
					       struct mapping_info *out)
{
	struct inode_info *ii = bpf_map_lookup_elem(&file_inodes, ik);
	if (!ii)
		return false;
	out->file_id = ii->file_id;
	out->bias = vm_start - (vm_pgoff << PAGE_SHIFT) - ii->seg_delta;
	out->flags = ii->flags;
	out->reserved = 0;
	count(STAT_VMA_RESOLVED);
	return true;
}

static __always_inline bool mapping_from_vma(struct vma_probe *vp, struct mapping_info *out)
{
	/* dev, ino, mtime_ns are laid out as a struct inode_key (no copy on the stack) */
	return mapping_from_inode(vp->vm_start, vp->vm_pgoff, (struct inode_key *)&vp->dev, out);
}

static __always_inline bool vma_cache_find(struct unwind_state *st, __u64 pc, struct mapping_info *out)
{
	struct vma_cache *c = bpf_map_lookup_elem(&vma_cache, &st->pid);
	if (!c)
		return false;
	for (int i = 0; i < VMA_CACHE_SLOTS; i++) {
		struct vma_cache_entry *e = &c->e[i];
		if (pc >= e->start && pc < e->end)
			return mapping_from_inode(e->start, e->pgoff, (struct inode_key *)&e->dev, out);
	}
	return false;
}

/* A new pid's cache starts empty (too large to build on the BPF stack). */
static struct vma_cache empty_vma_cache;

static __always_inline void vma_cache_add(__u32 pid, struct vma_probe *vp)
{
	struct vma_cache *c = bpf_map_lookup_elem(&vma_cache, &pid);
	if (!c) {
		bpf_map_update_elem(&vma_cache, &pid, &empty_vma_cache, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&vma_cache, &pid);
		if (!c)
			return;
	}
	__u32 slot = c->next % VMA_CACHE_SLOTS;
	c->next = slot + 1;
	struct vma_cache_entry *e = &c->e[slot];
	e->start = vp->vm_start;
	e->end = vp->vm_end;
	e->pgoff = vp->vm_pgoff;
	e->dev = vp->dev;
	e->ino = vp->ino;
	e->mtime_ns = vp->mtime_ns;
}

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
/* Whether the interrupted instruction is the process's first: sp still points at argc, the initial stack
 * pointer the kernel set up, so there is no caller to find. */
static __always_inline bool at_process_entry(struct unwind_state *st)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return !st->return_address && st->sp == BPF_CORE_READ(task, mm, start_stack);
}

static __always_inline long frame_pointer_step(struct sample *s, struct unwind_state *st, __u16 error,
					       bool zero_ends)
{
	__u64 fp = st->fp;
	__u64 frame[2];

	count(STAT_FP_FRAMES);
	if (fp == 0)
		return zero_ends || at_process_entry(st) ? stack_complete(st) : fail(s, st, error);
	if (fp < st->sp || (fp & 7))
		return at_process_entry(st) ? stack_complete(st) : fail(s, st, error);
	if (bpf_probe_read_user(frame, sizeof(frame), (void *)fp))
		return at_process_entry(st) ? stack_complete(st) : fail(s, st, error);
	st->fp = frame[0];
	st->pc = frame[1];
	st->sp = fp + 16;
	st->return_address = 1;
	st->via_frame_pointer = 1;
	st->regs_live = 0;
	st->rbx_valid = 0; /* a frame record doesn't say whether the callee saved rbx */
	if (st->pc == 0)
		return stack_complete(st);
	return 0;
}

/* Index of the last row whose pc <= target in rows[start, start + count), or -1.
 * Branch-free inside the loop: each comparison only moves lo and n by arithmetic, so the verifier walks one
 * path per step instead of forking at every comparison (with the bounds it learns from each fork, those
 * paths stop looking alike and can't be pruned: 2^BSEARCH_STEPS of them). */
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
		/* le: 1 when row->pc <= target (the difference of two u32s is negative otherwise) */
		__u64 le = (((__u64)target - (__u64)row->pc) >> 63) ^ 1;
		asm volatile("" : "+r"(le)); /* an opaque 0 or 1: no select for clang to turn back into a branch */
		lo += (half + 1) & (__u32)-le;
		n = half - (__u32)(le & ~n & 1); /* n - half - 1 when le, else half */
	}
	if (n != 0 || lo == start)
		return -1;
	return lo - 1;
}

/* The INTERP_* kind of the interpreter loop holding elf_pc, 0 when it is in none. */
static __always_inline __u32 in_interpreter(__u64 file_id, __u64 elf_pc)
{
	struct interp_ranges *r = bpf_map_lookup_elem(&interp_ranges, &file_id);
	if (!r)
		return 0;
	for (int i = 0; i < MAX_INTERP_RANGES; i++) {
		if (elf_pc >= r->start[i] && elf_pc < r->end[i])
			return r->kind;
	}
	return 0;
}

/* The walker that finishes the thread's interpreter frames after a deferral (MODE_*_TAIL), else
 * MODE_NATIVE (sampler.bpf.c defines it once every walker is known). */
static __always_inline __u8 tail_mode(struct unwind_state *st);
/* interpreters/v8/v8_unwind.bpf.h: one JavaScript frame, or V8_NOT_JS (then the native unwinder goes on). */
#define V8_NOT_JS 2
__noinline long v8_step(struct sample *s, struct unwind_state *st, __u8 fflags, bool jit);
/* interpreters/hotspot/hotspot_unwind.bpf.h: one Java frame from the JVM's code cache, or HS_NOT_JAVA. */
#define HS_NOT_JAVA 2
__noinline long hotspot_step(struct sample *s, struct unwind_state *st, __u8 fflags);

/* interpreters/php/php_unwind.bpf.h: a pc in opcache's JIT buffer becomes execute_ex's (0), or JIT_NONE. */
__noinline long php_jit_step(struct unwind_state *st);

/* Anonymous code: a JavaScript or Java frame of a V8 or HotSpot process, PHP's JIT'd code, else JIT_NONE. */
#define JIT_NONE 2
static __always_inline long jit_step(struct sample *s, struct unwind_state *st, __u8 fflags)
{
	long js = v8_step(s, st, fflags, true);
	if (js != V8_NOT_JS)
		return js;
	js = hotspot_step(s, st, fflags);
	return js != HS_NOT_JAVA ? js : php_jit_step(st);
}

/* Stop here and hand the agent a copy of the stack from sp up (to the end of the stack's vma, at most
 * MAX_SNAPSHOT_STACK): it finishes the unwinding once the table of the file at pc is loaded. The sample goes
 * out as usual, flagged SAMPLE_FLAG_DEFERRED; submit() sends the snapshot right after it. */
static __always_inline long defer(struct sample *s, struct unwind_state *st, __u64 file_id, __u64 bias,
				  struct vma_probe *vp, __u8 pushed)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct snapshot_buf *buf = bpf_map_lookup_elem(&snapshots, &cpu);
	if (!buf)
		return fail(s, st, UNWIND_ERR_NOT_READY);
	struct stack_snapshot *snap = &buf->snap;
	__builtin_memcpy(&snap->hdr, &s->hdr, sizeof(snap->hdr));
	snap->hdr.num_kernel = 0;
	snap->hdr.num_user = 0;
	snap->hdr.error = 0;
	snap->hdr.flags = SAMPLE_FLAG_SNAPSHOT;
	snap->regs.pc = st->pc;
	snap->regs.sp = st->sp;
	snap->regs.fp = st->fp;
	snap->regs.file_id = file_id;
	snap->regs.bias = bias;
	snap->regs.vm_start = vp ? vp->vm_start : 0;
	snap->regs.vm_end = vp ? vp->vm_end : 0;
	snap->regs.vm_pgoff = vp ? vp->vm_pgoff : 0;
	snap->regs.dev = vp ? vp->dev : 0;
	snap->regs.ino = vp ? vp->ino : 0;
	snap->regs.mtime_ns = vp ? vp->mtime_ns : 0;
	snap->regs.return_address = st->return_address;
	snap->regs.pushed = pushed;
	snap->regs.rbx = st->rbx;
	snap->regs.rbx_valid = st->rbx_valid;
	snap->regs.regs_live = 0;
	__u32 zero = 0;
	struct user_gprs *g = st->regs_live ? bpf_map_lookup_elem(&user_gprs, &zero) : NULL;
	if (g) {
		__builtin_memcpy(snap->regs.gprs, g, sizeof(snap->regs.gprs));
		snap->regs.regs_live = 1;
	} else {
		__builtin_memset(snap->regs.gprs, 0, sizeof(snap->regs.gprs));
	}

	/* Copy page by page up to the first unreadable one (the end of the stack): a read that faults
	 * anywhere copies nothing. */
	__u64 size = 0;
	__u64 chunk = 4096 - (st->sp & 4095);
	for (int i = 0; i < MAX_SNAPSHOT_STACK / 4096 + 1; i++) {
		if (size + chunk > MAX_SNAPSHOT_STACK)
			chunk = MAX_SNAPSHOT_STACK - size;
		if (chunk == 0 || size >= MAX_SNAPSHOT_STACK)
			break;
		if (chunk > 4096)
			break;
		if (bpf_probe_read_user(&snap->stack[size & (MAX_SNAPSHOT_STACK - 1)], chunk, (void *)(st->sp + size)))
			break;
		size += chunk;
		chunk = 4096;
	}
	snap->regs.stack_size = size;
	s->hdr.flags |= SAMPLE_FLAG_DEFERRED;
	st->snapshot = 1;
	long end = fail(s, st, UNWIND_ERR_NOT_READY);
	/* The replay can't read interpreter frames (they live outside the stack copy): walk the rest now. */
	__u8 mode = tail_mode(st);
	if (mode == MODE_NATIVE)
		return end;
	st->mode = mode;
	st->next = NEXT_NATIVE;
	return 0;
}

/* The interrupted code's registers, all of them, from the sigcontext: its frame unwinds like a leaf.
 * The trampoline is entered by the handler's return, not by a call, so its own frame (just pushed) loses
 * the return-address flag: it is named after the trampoline, not after the byte before it. */
static __always_inline long signal_frame_step(struct sample *s, struct unwind_state *st)
{
	__u32 zero = 0;
	__u32 last = (__u32)s->hdr.num_kernel + s->hdr.num_user - 1;

	count(STAT_SIGNAL_FRAMES);
	if (s->hdr.num_user && last < MAX_FRAMES)
		s->frames[last].flags &= ~FRAME_FLAG_RETURN_ADDRESS;
	st->regs_live = 0;
	struct user_gprs *g = bpf_map_lookup_elem(&user_gprs, &zero);
	if (!g || bpf_probe_read_user(g, sizeof(*g), (void *)(st->sp + UCONTEXT_MCONTEXT)))
		return fail(s, st, UNWIND_ERR_READ_FAILED);
	st->fp = g->bp;
	st->sp = g->sp;
	st->pc = g->ip;
	st->rbx = g->bx;
	st->rbx_valid = 1;
	st->regs_live = 1;
	st->return_address = 0; /* the interrupted instruction itself */
	if (st->pc == 0)
		return stack_complete(st);
	return 0;
}

#define RESOLVED 2 /* resolve_unknown: the mapping is in vma_mapping() */
#define STEP_ON 0  /* resolve_unknown: the step is done, the loop goes on */
#define STEP_END 1 /* resolve_unknown: the stack ended (deferred, complete, or an error) */

static __always_inline struct mapping_info *vma_mapping(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&vma_mapping_out, &zero);
}

/* A pc outside the process's known mappings (maps not read yet: new process, exec, dlopen): ask the kernel
 * which file holds it. Not inlined, so its stack is not added to the loop step's. */
__noinline long resolve_unknown(struct sample *s, struct unwind_state *st, __u64 pc, __u8 fflags)
{
	struct vma_probe *vp = vma_slot(VMA_SLOT_SAMPLE);
	struct mapping_info *out = vma_mapping();
	if (!vp || !out || !s || !st)
		return STEP_END;
	bool found = false;
	long vma_err = VMA_NONE;
	if (vma_cache_find(st, pc, out)) {
		found = true;
	} else {
		vma_err = probe_vma(st, pc, vp);
		if (vma_err == 0 && vp->has_file) {
			vma_cache_add(st->pid, vp);
			found = mapping_from_vma(vp, out);
		}
	}
	if (!found && vma_err == VMA_NONE && st->in_kernel && s->hdr.num_user == 0) {
		/* The interrupted user pc lies in no vma: the task is inside execve, between its old image and
		 * its new one. There is no user stack to unwind. */
		s->hdr.flags |= SAMPLE_FLAG_EXECING;
		return stack_complete(st);
	}
	if (!st->pid_known)
		report_pid(EVENT_NEW_PID, st->pid, pc);
	else if (!st->via_frame_pointer)
		report_pid(EVENT_UNKNOWN_PC, st->pid, pc); /* fp-derived pcs may be garbage: no rescans */
	if (found)
		return RESOLVED;
	/* A file the agent has not seen: wait for its table, unless pc came from frame pointers (perhaps
	 * garbage) or lies in anonymous code (JIT: frame pointers are all there is). */
	if (!st->via_frame_pointer && ((vma_err == 0 && vp->has_file) || vma_err == VMA_BUDGET_SPENT))
		return defer(s, st, 0, 0, vma_err == 0 ? vp : NULL, 0);
	if (!push_frame(s, 0, pc, 0, FRAME_NATIVE_RAW, fflags))
		return fail(s, st, UNWIND_ERR_DEPTH_LIMIT);
	/* An unknown pc: trust rbp == 0 only from a frame record (an unscanned process walked with frame
	 * pointers), not from registers or a table step of unknown provenance. */
	return frame_pointer_step(s, st, UNWIND_ERR_NO_MAPPING, st->via_frame_pointer);
}

__noinline long native_step(struct sample *s, struct unwind_state *st)
{
	if (!s || !st)
		return 1;
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
		struct mapping_info *m = NULL;
		if (st->lpm_pid) {
			struct mapping_key key = {.prefixlen = 96, .pid = st->lpm_pid, .addr_be = __builtin_bswap64(pc)};
			m = bpf_map_lookup_elem(&mappings, &key);
		}
		if (!m) {
			/* anonymous code of a V8 or HotSpot process: JIT-compiled JavaScript or Java */
			long js = jit_step(s, st, fflags);
			if (js != JIT_NONE)
				return js;
			long how = resolve_unknown(s, st, pc, fflags);
			if (how != RESOLVED)
				return how == STEP_ON ? 0 : 1;
			m = vma_mapping();
			if (!m)
				return fail(s, st, UNWIND_ERR_NO_MAPPING);
		}
		st->cur_file_id = m->file_id;
		st->cur_bias = m->bias;
		st->cur_flags = m->flags;
		if (!st->cur_file_id) {
			/* anonymous code (the agent read the maps): JIT-compiled JavaScript or Java */
			long js = jit_step(s, st, fflags);
			if (js != JIT_NONE)
				return js;
		}
		__u32 interp = st->cur_flags & MAPPING_FLAG_INTERPRETER ? in_interpreter(st->cur_file_id, pc - st->cur_bias) : 0;
		if (interp == INTERP_V8) {
			/* node's embedded builtins: the interpreter running a JavaScript function, or a builtin */
			long js = v8_step(s, st, fflags, false);
			if (js != V8_NOT_JS)
				return js;
		} else if (interp) {
			st->mode = interp == INTERP_PHP    ? MODE_PHP
				   : interp == INTERP_RUBY ? MODE_RUBY
				   : interp == INTERP_PERL ? MODE_PERL
							   : MODE_PYTHON;
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
	if (!t) {
		/* The table is being compiled or loaded (or was evicted): let the agent finish this stack. */
		if (!st->via_frame_pointer)
			return defer(s, st, file_id, st->cur_bias, NULL, 1);
		return frame_pointer_step(s, st, UNWIND_ERR_FRAME_POINTER, st->return_address);
	}
	if (t->count == 0) /* no table for this file: frame pointers */
		return frame_pointer_step(s, st, UNWIND_ERR_FRAME_POINTER, st->return_address);

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
	case UW_CFA_RBX:
		if (!st->rbx_valid)
			return fail(s, st, UNWIND_ERR_INVALID_RULE);
		cfa = st->rbx + (__s64)r->cfa_off;
		break;
	case UW_CFA_REG: /* only while the registers are this frame's own (leaf, or after a signal frame) */
		if (!live_gpr(st, (__u32)r->cfa_aux, &tmp))
			return fail(s, st, UNWIND_ERR_INVALID_RULE);
		cfa = tmp + (__s64)r->cfa_off;
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
	if (r->rbp_kind == UW_RBP_AT_CFA && cfa + (__s64)r->rbp_off >= st->sp) {
		/* a slot below sp was popped already (GCC's epilogue CFI keeps the rule): rbp is the caller's */
		if (bpf_probe_read_user(&tmp, sizeof(tmp), (void *)(cfa + (__s64)r->rbp_off)))
			return fail(s, st, UNWIND_ERR_READ_FAILED);
		st->fp = tmp;
	} else if (r->rbp_kind == UW_RBP_AT_RBP) {
		/* gcc's stack realignment keeps "rbp saved at [rbp]" on the last two instructions, after `leave`
		 * restored the caller's rbp; when [rbp] can't be read there, rbp already is the caller's. */
		if (!bpf_probe_read_user(&tmp, sizeof(tmp), (void *)(st->fp + (__s64)r->rbp_off)))
			st->fp = tmp;
	}
	if (r->rbx_off == UW_RBX_LOST) {
		st->rbx_valid = 0;
	} else if (r->rbx_off != UW_RBX_SAME && cfa + (__s64)r->rbx_off >= st->sp) {
		/* an unreadable slot loses rbx, not the stack: few frames need it */
		st->rbx_valid = !bpf_probe_read_user(&tmp, sizeof(tmp), (void *)(cfa + (__s64)r->rbx_off));
		st->rbx = tmp;
	}
	st->sp = cfa;
	st->pc = ra;
	st->return_address = 1;
	st->via_frame_pointer = 0;
	st->regs_live = 0;
	if (ra == 0)
		return stack_complete(st);
	return 0;
}

#endif
