/* SPDX-License-Identifier: GPL-2.0-only */
/* The in-kernel CPython walker: one Python frame per step of the unwind loop.
 *
 * The native unwinder hands over when its pc is inside the eval loop (`interp_ranges`); this walker emits
 * the Python frames that eval-loop call runs (one on <= 3.10, up to the entry frame on 3.11, up to the shim
 * frame on 3.12+) and hands back, so native frames between Python frames stay in place. Version knowledge
 * lives in userspace (struct py_proc_info, python_offsets.h); nothing is symbolized here.
 * Included by tracer/bpf/sampler.bpf.c after the shared maps and helpers.
 */
#ifndef FLEETPROF_PYTHON_UNWIND_BPF_H
#define FLEETPROF_PYTHON_UNWIND_BPF_H

#include "python_offsets.h"

#define PY_MAX_THREADS 64 /* thread states examined when the tid cache misses */

/* Python walker failures (STAT_PY_ERROR_BASE + PY_ERR_*). */
#define PY_ERR_NO_PROC 0
#define PY_ERR_NO_TSTATE 1
#define PY_ERR_READ 2
#define PY_ERR_BAD_CODE 3
#define PY_ERR_CODE_RING 4 /* a code record did not fit py_codes (sent with a later sample) */

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct py_proc_info);
} py_procs SEC(".maps");

/* file id -> the same info with ELF addresses (bias 0): processes not registered yet (new, just exec'd) are
 * walked from their first sample with the load bias of the eval loop's mapping. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct py_proc_info);
} py_files SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct py_proc_info);
} py_info_scratch SEC(".maps");

/* Code objects whose identity was sent (struct py_code_record), per process: one lookup per emitted frame,
 * one copy per code object and process. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct py_code_key);
	__type(value, __u8);
} py_code_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} py_codes SEC(".maps");

/* tid -> PyThreadState address, verified on every use. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} py_tstates SEC(".maps");

static __always_inline __u64 read_u64(__u64 addr, bool *ok)
{
	__u64 v = 0;
	if (bpf_probe_read_user(&v, sizeof(v), (void *)addr))
		*ok = false;
	return v;
}

/* End the walk on `error`; after a deferral the sample keeps UNWIND_ERR_NOT_READY (the replay finishes it
 * with the Python frames walked so far). */
static __always_inline void py_stop(struct sample *s, struct unwind_state *st, __u16 error)
{
	if (st->mode == MODE_PY_TAIL)
		st->next = NEXT_SUBMIT;
	else
		stop(s, st, error);
}

static __always_inline long py_fail(struct sample *s, struct unwind_state *st, __u32 why)
{
	count(STAT_PY_ERROR_BASE + why);
	py_stop(s, st, UNWIND_ERR_PYTHON);
	return 1;
}

/* The PyThreadState of the sampled thread: pthread_self() (== fsbase on x86-64) matches tstate->thread_id. */
static __always_inline __u64 find_tstate(struct py_proc_info *info, __u32 tid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
	bool ok = true;
	__u64 *cached = bpf_map_lookup_elem(&py_tstates, &tid);
	if (cached) {
		__u64 t = *cached;
		if (t && read_u64(t + info->tstate_thread_id, &ok) == fsbase && ok)
			return t;
	}
	ok = true;
	__u64 interp = read_u64(info->runtime_addr + info->runtime_interp_head, &ok);
	if (!ok || !interp)
		return 0;
	__u64 t = read_u64(interp + info->interp_tstate_head, &ok);
	for (int i = 0; i < PY_MAX_THREADS; i++) {
		if (!ok || !t)
			return 0;
		if (read_u64(t + info->tstate_thread_id, &ok) == fsbase && ok) {
			bpf_map_update_elem(&py_tstates, &tid, &t, BPF_ANY);
			return t;
		}
		t = read_u64(t + info->tstate_next, &ok);
	}
	return 0;
}

/* n clamped to max in a way the verifier sees (the compiler may not reuse an unclamped copy of n). */
#define PY_CLAMP(n, max)                                                                   \
	({                                                                                 \
		__u64 __n = (n);                                                           \
		asm volatile("if %[v] <= %[m] goto +1; %[v] = %[m]" : [v] "+r"(__n) : [m] "i"(max)); \
		__n;                                                                       \
	})

/* Where a str object's characters are and how many bytes they take; false when it is not a compact str. */
static __always_inline bool py_str_data(struct py_proc_info *info, __u64 str, __u64 *data, __u32 *bytes,
					__u8 *kind)
{
	__s64 length = 0;
	__u32 state = 0;
	if (!str || bpf_probe_read_user(&length, sizeof(length), (void *)(str + info->unicode_length)) ||
	    bpf_probe_read_user(&state, sizeof(state), (void *)(str + info->unicode_state)))
		return false;
	__u8 k = (state >> PY_STATE_KIND_SHIFT) & 7;
	if (!((state >> PY_STATE_COMPACT_SHIFT) & 1) || length < 0 || length > 4096 ||
	    (k != 1 && k != 2 && k != 4))
		return false;
	bool ascii = (state >> PY_STATE_ASCII_SHIFT) & 1;
	if (ascii && k != 1)
		return false;
	*data = str + (ascii ? info->unicode_ascii_size : info->unicode_compact_size);
	*bytes = (__u32)length * k;
	*kind = k;
	return true;
}

/* Send the identity of a code object the first time this process's walker emits it. */
static __noinline void py_capture_code(struct py_proc_info *info, struct py_code_key *key, __s32 firstlineno,
				       __u64 filename)
{
	if (bpf_map_lookup_elem(&py_code_seen, key))
		return;
	__u64 code = key->code;
	bool ok = true;
	__u64 qualname = read_u64(code + info->code_qualname, &ok);
	__u64 table = read_u64(code + info->code_linetable, &ok);
	__s64 table_size = 0;
	if (!ok || !table ||
	    bpf_probe_read_user(&table_size, sizeof(table_size), (void *)(table + info->var_ob_size)) ||
	    table_size < 0)
		return;
	struct py_code_record *rec = bpf_ringbuf_reserve(&py_codes, sizeof(*rec), 0);
	if (!rec) {
		count(STAT_PY_ERROR_BASE + PY_ERR_CODE_RING);
		return;
	}
	rec->code = code;
	rec->pid = key->pid;
	rec->checksum = key->checksum;
	rec->firstlineno = firstlineno;
	rec->table_size = table_size > 0xffffffffLL ? 0xffffffffu : (__u32)table_size;
	rec->version = info->version;
	rec->flags = 0;
	rec->reserved0 = 0;
	rec->reserved1 = 0;
	rec->name_len = 0;
	rec->file_len = 0;
	rec->name_kind = 0;
	rec->file_kind = 0;

	__u64 n = PY_CLAMP(table_size, PY_CODE_TABLE_MAX); /* table_size >= 0 */
	if (bpf_probe_read_user(rec->table, n, (void *)(table + info->bytes_sval)))
		n = 0;
	rec->table_len = n;

	__u64 data = 0;
	__u32 bytes = 0;
	__u8 kind = 0;
	if (py_str_data(info, qualname, &data, &bytes, &kind)) {
		n = PY_CLAMP(bytes, PY_CODE_NAME_MAX);
		if (!bpf_probe_read_user(rec->name, n, (void *)data)) {
			rec->name_len = n;
			rec->name_kind = kind;
		}
	}
	if (py_str_data(info, filename, &data, &bytes, &kind)) {
		if (bytes > PY_CODE_FILE_MAX) {
			data += bytes - PY_CODE_FILE_MAX; /* the tail, on a character boundary (kind divides 160) */
			rec->flags |= PY_CODE_F_FILE_TAIL;
		}
		n = PY_CLAMP(bytes, PY_CODE_FILE_MAX);
		if (!bpf_probe_read_user(rec->file, n, (void *)data)) {
			rec->file_len = n;
			rec->file_kind = kind;
		}
	}
	if (!rec->name_kind) {
		bpf_ringbuf_discard(rec, 0); /* nothing to name it by: userspace reads memory, as before */
		return;
	}
	bpf_ringbuf_submit(rec, 0);
	__u8 one = 1;
	bpf_map_update_elem(&py_code_seen, key, &one, BPF_ANY);
}

/* Emit the Python frame at `f`; false (with the stack marked) when it is not a plausible frame. */
static __always_inline bool emit_py_frame(struct sample *s, struct unwind_state *st, struct py_proc_info *info,
					  __u64 f)
{
	bool ok = true;
	__u64 code = read_u64(f + info->frame_code, &ok);
	if (info->flags & PY_F_EXEC_TAGGED)
		code &= ~3ULL;
	if (!ok || !code) {
		py_fail(s, st, PY_ERR_READ);
		return false;
	}
	if (info->code_type_addr && read_u64(code + info->ob_type, &ok) != info->code_type_addr) {
		py_fail(s, st, ok ? PY_ERR_BAD_CODE : PY_ERR_READ);
		return false;
	}
	__u32 lasti = PY_LASTI_NONE;
	if (info->flags & PY_F_LASTI_PTR) {
		__u64 p = read_u64(f + info->frame_lasti, &ok);
		__s64 d = (__s64)(p - (code + info->code_adaptive));
		if (p && d >= 0)
			lasti = (__u32)(d >> 1);
	} else {
		__s32 v = 0;
		if (bpf_probe_read_user(&v, sizeof(v), (void *)(f + info->frame_lasti)))
			ok = false;
		if (v >= 0)
			lasti = (__u32)v >> (info->lasti_shift & 7);
	}
	__s32 ints[2] = {0, 0};
	if (bpf_probe_read_user(&ints[0], 4, (void *)(code + info->code_firstlineno)) ||
	    bpf_probe_read_user(&ints[1], 4, (void *)(code + info->code_argcount)))
		ok = false;
	__u64 filename = read_u64(code + info->code_filename, &ok);
	__u64 name = read_u64(code + info->code_name, &ok);
	if (!ok) {
		py_fail(s, st, PY_ERR_READ);
		return false;
	}
	__u32 csum = py_code_checksum((__u32)ints[0], (__u32)ints[1], filename, name);
	struct py_code_key key = {.code = code, .pid = st->pid, .checksum = csum, .start = st->start_lo};
	py_capture_code(info, &key, ints[0], filename);
	if (!push_frame(s, code, lasti, csum, FRAME_PYTHON, st->mode == MODE_PY_TAIL ? FRAME_FLAG_TAIL : 0)) {
		py_stop(s, st, UNWIND_ERR_DEPTH_LIMIT);
		return false;
	}
	count(STAT_PYTHON_FRAMES);
	st->interp_emitted = 1;
	return true;
}

/* Point the Python cursor at the thread's current frame (0: no thread state, or no frame); true on a failed
 * read. */
static __always_inline bool py_start(struct unwind_state *st, struct py_proc_info *info)
{
	bool ok = true;
	st->py_started = 1;
	st->py_frame = 0;
	__u64 tstate = find_tstate(info, st->tid);
	if (!tstate) {
		count(STAT_PY_ERROR_BASE + PY_ERR_NO_TSTATE);
		return false;
	}
	__u64 f = read_u64(tstate + info->tstate_frame, &ok);
	if (ok && f && (info->flags & PY_F_CFRAME))
		f = read_u64(f + info->cframe_current_frame, &ok);
	st->py_frame = ok ? f : 0;
	return !ok;
}

/* The walk info of the sampled process: its own, else its interpreter file's relocated by the load bias. */
static __always_inline struct py_proc_info *py_info(struct unwind_state *st)
{
	struct py_proc_info *info = bpf_map_lookup_elem(&py_procs, &st->pid);
	if (info)
		return info;
	__u32 zero = 0;
	struct py_proc_info *tmp = bpf_map_lookup_elem(&py_info_scratch, &zero);
	if (!tmp)
		return NULL;
	if (st->py_file_info)
		return tmp;
	struct py_proc_info *fi = bpf_map_lookup_elem(&py_files, &st->cur_file_id);
	if (!fi)
		return NULL;
	__builtin_memcpy(tmp, fi, sizeof(*tmp));
	tmp->runtime_addr += st->cur_bias;
	if (tmp->code_type_addr)
		tmp->code_type_addr += st->cur_bias;
	st->py_file_info = 1;
	return tmp;
}

/* One step of the Python walker: emit (at most) one frame, or hand back to the native unwinder. */
__noinline long python_step(struct sample *s, struct unwind_state *st)
{
	if (!s || !st)
		return 1;
	struct py_proc_info *info = py_info(st);
	if (!info) {
		count(STAT_PY_ERROR_BASE + PY_ERR_NO_PROC);
		st->py_no_info = 1;
		st->mode = MODE_NATIVE; /* not registered (yet): keep the native frames */
		return 0;
	}
	if (!st->py_started && py_start(st, info))
		return py_fail(s, st, PY_ERR_READ);
	bool ok = true;
	__u64 f = st->py_frame;
	if (!f) {
		st->mode = MODE_NATIVE; /* no Python frame left for this eval-loop call */
		return 0;
	}
	__u64 prev = read_u64(f + info->frame_previous, &ok);
	if (!ok)
		return py_fail(s, st, PY_ERR_READ);
	if (prev == f)
		return py_fail(s, st, PY_ERR_READ); /* a cycle: torn read of a frame being rewritten */

	switch (info->walk_kind) {
	case PY_WALK_FRAMEOBJECT:
		if (!emit_py_frame(s, st, info, f))
			return 1;
		st->py_frame = prev;
		st->mode = MODE_NATIVE;
		return 0;
	case PY_WALK_IS_ENTRY: {
		__u8 entry = 0;
		if (bpf_probe_read_user(&entry, 1, (void *)(f + info->frame_entry)))
			return py_fail(s, st, PY_ERR_READ);
		if (!emit_py_frame(s, st, info, f))
			return 1;
		st->py_frame = prev;
		if (entry)
			st->mode = MODE_NATIVE;
		return 0;
	}
	case PY_WALK_SHIM: {
		__u8 owner = 0;
		if (bpf_probe_read_user(&owner, 1, (void *)(f + info->frame_entry)))
			return py_fail(s, st, PY_ERR_READ);
		st->py_frame = prev;
		if (owner >= info->owner_shim_min) {
			st->mode = MODE_NATIVE; /* the shim ends this eval-loop call; never shown */
			return 0;
		}
		if (!emit_py_frame(s, st, info, f))
			return 1;
		return 0;
	}
	default:
		return py_fail(s, st, PY_ERR_NO_PROC);
	}
}

/* The walk info for the frames after a deferral: as python_step found it, else (no eval-loop frame met
 * yet, process not registered) from an interpreter file among the vmas this process's samples have seen. */
static __noinline struct py_proc_info *py_tail_info(struct unwind_state *st)
{
	if (!st)
		return NULL;
	struct py_proc_info *info = py_info(st);
	if (info || st->py_started)
		return info;
	struct vma_cache *c = bpf_map_lookup_elem(&vma_cache, &st->pid);
	__u32 zero = 0;
	struct py_proc_info *tmp = bpf_map_lookup_elem(&py_info_scratch, &zero);
	if (!c || !tmp)
		return NULL;
	for (int i = 0; i < VMA_CACHE_SLOTS; i++) {
		struct vma_cache_entry *e = &c->e[i];
		if (!e->start)
			continue;
		struct inode_info *ii = bpf_map_lookup_elem(&file_inodes, (struct inode_key *)&e->dev);
		if (!ii)
			continue;
		struct py_proc_info *fi = bpf_map_lookup_elem(&py_files, &ii->file_id);
		if (!fi)
			continue;
		__u64 bias = e->start - (e->pgoff << PAGE_SHIFT) - ii->seg_delta;
		__builtin_memcpy(tmp, fi, sizeof(*tmp));
		tmp->runtime_addr += bias;
		if (tmp->code_type_addr)
			tmp->code_type_addr += bias;
		st->py_file_info = 1;
		return tmp;
	}
	return NULL;
}

/* Mark the sample's last frame, when it is a tail interpreter frame, as the outermost of its VM-loop call
 * (shared by the PHP and Ruby walkers' tails). */
static __always_inline void tail_call_end(struct sample *s)
{
	__u32 last = (__u32)s->hdr.num_kernel + s->hdr.num_user - 1;
	if (s->hdr.num_user && last < MAX_FRAMES && (s->frames[last].flags & FRAME_FLAG_TAIL))
		s->frames[last].flags |= FRAME_FLAG_CALL_END;
}

/* One step of the walk after a deferral (MODE_PY_TAIL): the thread's next Python frame, flagged PY_TAIL and,
 * at the end of each eval-loop call, CALL_END, so the agent's replay puts it where the eval-loop frame is.
 * The sample keeps UNWIND_ERR_NOT_READY; a failed read ends the walk with what it has. */
__noinline long py_tail_step(struct sample *s, struct unwind_state *st)
{
	if (!s || !st)
		return 1;
	struct py_proc_info *info = py_tail_info(st);
	if (!info || (!st->py_started && py_start(st, info))) {
		st->next = NEXT_SUBMIT;
		return 1;
	}
	bool ok = true;
	__u64 f = st->py_frame;
	__u64 prev = f ? read_u64(f + info->frame_previous, &ok) : 0;
	if (!f || !ok || prev == f) {
		if (!f)
			tail_call_end(s); /* the thread's outermost frame */
		st->next = NEXT_SUBMIT;
		return 1;
	}
	__u8 byte = 0;
	if (info->walk_kind != PY_WALK_FRAMEOBJECT &&
	    bpf_probe_read_user(&byte, 1, (void *)(f + info->frame_entry))) {
		st->next = NEXT_SUBMIT;
		return 1;
	}
	st->py_frame = prev;
	if (info->walk_kind == PY_WALK_SHIM && byte >= info->owner_shim_min) {
		tail_call_end(s); /* a shim starts each eval-loop call; never shown */
		return 0;
	}
	if (!emit_py_frame(s, st, info, f))
		return 1;
	if (info->walk_kind == PY_WALK_FRAMEOBJECT || (info->walk_kind == PY_WALK_IS_ENTRY && byte))
		tail_call_end(s);
	return 0;
}

#endif
