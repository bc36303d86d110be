// SPDX-License-Identifier: GPL-2.0-only
/* The sampler: on every cpu-clock tick, capture the kernel stack and unwind the user stack of the task on
 * the CPU, then hand one record to userspace through a ring buffer.
 *
 * Program chain (tail calls through `progs`):
 *   on_sample  - filters, fills the per-CPU record header, kernel stack, user registers
 *   PROG_NATIVE - a bounded loop (bpf_loop) of unwind steps: native frames from unwind tables compiled from
 *                .eh_frame (nativeunwind/), frame pointers as the fallback; when the pc is in an interpreter
 *                loop the next steps run that interpreter's walker (interpreters/python/, php/, ruby/, perl/)
 *                and then hand back;
 *                then it submits the record.
 */
#include "kernel_types.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "sample.h"
#include "unwind_table.h"

char LICENSE[] SEC("license") = "GPL";

#define RATE_LIMIT_NS (10ULL * 1000 * 1000) /* per pid; userspace backs off further */

/* ---- maps ---------------------------------------------------------------------------------------- */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the agent before load */
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} events SEC(".maps");

/* The unwinder's registers and progress, carried across loop steps and tail calls. */
struct unwind_state {
	__u64 pc;
	__u64 sp;
	__u64 fp;
	__u64 cur_file_id;     /* mapping of the frame at pc, kept while an interpreter walker runs */
	__u64 cur_bias;
	__u64 py_frame;        /* Python walker: the next Python frame to emit */
	__u32 pid;
	__u32 tid;
	__u32 cur_flags;
	__u32 start_lo;        /* low 32 bits of the process's start time (ns): keys per-process caches */
	__u8 return_address;   /* pc is a return address (not the interrupted instruction) */
	__u8 next;             /* NEXT_*: what runs after the loop */
	__u8 mode;             /* MODE_*: which walker the next loop step runs */
	__u8 resume;           /* back from an interpreter walker: unwind the eval-loop frame at pc */
	__u8 py_started;       /* the Python cursor was initialised from the thread state */
	__u8 via_frame_pointer; /* pc came from a frame-pointer step (less trustworthy) */
	__u8 interp_emitted;   /* the interpreter walker emitted frames for the current eval-loop frame */
	__u8 pid_known;        /* the agent has read this process's maps: `mappings` entries are current */
	__u8 snapshot;         /* a stack snapshot waits in `snapshots` to follow the sample */
	__u8 py_file_info;     /* the Python walker's info came from `py_files` (process not registered yet) */
	__u8 vma_probed;       /* this sample's one bpf_find_vma is spent */
	__u8 in_kernel;        /* the sample interrupted kernel code (user registers from pt_regs) */
	__u8 young;            /* the process started less than YOUNG_NS ago */
	__u8 py_no_info;       /* an eval-loop frame was met with no Python walk info: keep its native frames */
	__u8 reserved[1];
	__u32 lpm_pid;         /* whose `mappings` to look in: the pid, its parent (forked_from), or 0 */
	__u32 reserved1;
	__u64 rbx;             /* the frame's rbx, tracked like rbp (UW_CFA_RBX rules) */
	__u8 rbx_valid;        /* rbx is known: not lost by an unsaved clobber or a frame-pointer step */
	__u8 regs_live;        /* the per-CPU `user_gprs` are the frame at pc's own (leaf or signal frame) */
	__u8 php_started;      /* the PHP cursor was initialised from EG(current_execute_data) */
	__u8 rb_started;       /* the Ruby cursor was initialised from the thread's execution context */
	__u8 reserved2[4];
	__u64 php_ex;          /* PHP walker: the next zend_execute_data to emit */
	__u64 rb_cfp;          /* Ruby walker: the next control frame */
	__u64 rb_end;          /* Ruby walker: the end of the thread's VM stack */
	__u64 pl_cop;          /* Perl walker: the COP the next frame is at */
	__u64 pl_cxstack;      /* Perl walker: the current stackinfo's context array */
	__u64 pl_prev;         /* Perl walker: the stackinfo below */
	__s32 pl_cx;           /* Perl walker: the next context's index (-1: the stackinfo is done) */
	__u8 pl_started;       /* the Perl cursor was initialised from the thread's interpreter */
	__u8 pl_done;          /* every Perl frame is out (at the innermost runops frame) */
	__u8 pl_main;          /* the interpreter is PL_curinterp: the main program is its bottom frame */
	__u8 pl_si_had_cx;     /* the current stackinfo has contexts (a runlevel when another lies below) */
	__u8 pl_runlevels;     /* events met since the last frame emitted */
	__u8 pl_cevals;
	__u8 pl_sis;           /* stackinfos walked */
	__u8 pl_cevals_in;     /* call_sv(G_EVAL) scopes before the first runlevel since the last frame */
};

/* Processes younger than this wake the agent with every sample (see submit()). */
#define YOUNG_NS (2ULL * 1000000000ULL)

#define NEXT_SUBMIT 0
#define NEXT_NATIVE 1

#define MODE_NATIVE 0
#define MODE_PYTHON 1
#define MODE_PY_TAIL 2 /* after a deferral: the thread's remaining Python frames, for the agent's replay */
#define MODE_PHP 3
#define MODE_RUBY 4
#define MODE_PHP_TAIL 5  /* after a deferral: the thread's remaining PHP frames */
#define MODE_RUBY_TAIL 6 /* after a deferral: the thread's remaining Ruby frames */
#define MODE_PERL 7
#define MODE_PERL_TAIL 8 /* after a deferral: the thread's Perl frames (all of them: none was walked yet) */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sample);
} scratch_sample SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct unwind_state);
} scratch_state SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64[MAX_KERNEL_FRAMES]);
} scratch_kstack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sampler_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} pid_filter SEC(".maps");

/* pids whose mappings the agent has loaded (value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} known_pids SEC(".maps");

/* Rate limit for pid events: pid -> ktime of the last report. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} reported_pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct mapping_key);
	__type(value, struct mapping_info);
} mappings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct file_table);
} file_tables SEC(".maps");

/* Files the agent knows, by inode: mappings of processes whose maps it has not read yet. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct inode_key);
	__type(value, struct inode_info);
} file_inodes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct vma_cache);
} vma_cache SEC(".maps");

/* A forked child that has not exec'd yet maps what its parent mapped: child pid -> the scanned pid whose
 * `mappings` entries it may use until the agent reads its own maps (pre-fork servers, subshells). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u32);
} forked_from SEC(".maps");

/* One stack snapshot buffer per CPU (indexed by CPU; larger than a per-CPU value may be). The slack lets
 * the verifier accept page-sized copies at any offset below MAX_SNAPSHOT_STACK. */
struct snapshot_buf {
	struct stack_snapshot snap;
	__u8 slack[4096];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512); /* resized to the possible CPUs by the agent before load */
	__type(key, __u32);
	__type(value, struct snapshot_buf);
} snapshots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 21); /* resized by the agent before load */
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct unwind_row);
} unwind_rows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct unwind_rule);
} unwind_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, struct interp_ranges);
} interp_ranges SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, PROG_COUNT);
	__type(key, __u32);
	__type(value, __u32);
} progs SEC(".maps");

/* ---- helpers ------------------------------------------------------------------------------------- */

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline void report_pid(__u32 type, __u32 pid, __u64 addr)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&reported_pids, &pid);
	if (last && now - *last < RATE_LIMIT_NS)
		return;
	bpf_map_update_elem(&reported_pids, &pid, &now, BPF_ANY);
	struct pid_event ev = {.type = type, .pid = pid, .addr = addr};
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0) == 0)
		count(STAT_EVENTS);
	else
		count(STAT_EVENTS_LOST);
}

/* Whether the sampler looks at this process (whole host, or the pid filter). */
static __always_inline bool wanted(__u32 pid)
{
	__u32 zero = 0;
	struct sampler_config *cfg = bpf_map_lookup_elem(&config, &zero);
	return !cfg || cfg->filter != FILTER_PIDS || bpf_map_lookup_elem(&pid_filter, &pid);
}

static __always_inline struct sample *get_sample(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_sample, &zero);
}

static __always_inline struct unwind_state *get_state(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&scratch_state, &zero);
}

/* Appends a user frame; returns false when the record is full. */
static __always_inline bool push_frame(struct sample *s, __u64 id, __u64 addr, __u32 aux, __u8 kind, __u8 flags)
{
	__u32 idx = (__u32)s->hdr.num_kernel + s->hdr.num_user;
	if (idx >= MAX_FRAMES)
		return false;
	struct frame *f = &s->frames[idx];
	f->id = id;
	f->addr = addr;
	f->aux = aux;
	f->kind = kind;
	f->flags = flags;
	f->reserved = 0;
	s->hdr.num_user++;
	return true;
}

static __always_inline void stop(struct sample *s, struct unwind_state *st, __u16 error)
{
	s->hdr.error = error;
	st->next = NEXT_SUBMIT;
	count(STAT_ERROR_BASE + error);
}

static __always_inline int submit(struct sample *s, struct unwind_state *st)
{
	__u64 size = sizeof(struct sample_header) + ((__u64)s->hdr.num_kernel + s->hdr.num_user) * sizeof(struct frame);
	if (size > sizeof(struct sample))
		size = sizeof(struct sample);
	/* Samples don't wake the agent, which drains them in batches (a wakeup per sample costs more than
	 * the sample); a ring an eighth full does, so bursts can't overflow it between batches. Samples of a
	 * process the agent has not read yet, or of one started less than YOUNG_NS ago, do: it may be
	 * short-lived, and its Python frames are named from its memory while it lives. */
	__u64 pending = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA);
	__u64 ring = bpf_ringbuf_query(&samples, BPF_RB_RING_SIZE);
	__u64 flags = pending + size >= ring / 8 || !st->pid_known || st->young ? BPF_RB_FORCE_WAKEUP
										: BPF_RB_NO_WAKEUP;
	bool sent = bpf_ringbuf_output(&samples, s, size, st->snapshot ? BPF_RB_NO_WAKEUP : flags) == 0;
	count(sent ? STAT_SAMPLES_SUBMITTED : STAT_RINGBUF_FULL);
	if (st->snapshot) {
		__u32 cpu = bpf_get_smp_processor_id();
		struct snapshot_buf *buf = bpf_map_lookup_elem(&snapshots, &cpu);
		if (!buf)
			return 0;
		struct stack_snapshot *snap = &buf->snap;
		__u64 ssize = snap->regs.stack_size;
		if (ssize > MAX_SNAPSHOT_STACK)
			ssize = MAX_SNAPSHOT_STACK;
		ssize += sizeof(struct sample_header) + sizeof(struct snapshot_regs);
		if (sent && bpf_ringbuf_output(&samples, snap, ssize, BPF_RB_FORCE_WAKEUP) == 0)
			count(STAT_SNAPSHOTS);
		else
			count(STAT_SNAPSHOTS_LOST);
	}
	return 0;
}

#include "native_unwind.bpf.h"
#include "python_unwind.bpf.h"
#include "php_unwind.bpf.h"
#include "ruby_unwind.bpf.h"
#include "perl_unwind.bpf.h"
#include "v8_unwind.bpf.h"
#include "hotspot_unwind.bpf.h"
#include "go_labels.bpf.h"

static __always_inline __u8 tail_mode(struct unwind_state *st)
{
	if (bpf_map_lookup_elem(&php_procs, &st->pid))
		return st->php_started && !st->php_ex ? MODE_NATIVE : MODE_PHP_TAIL;
	if (bpf_map_lookup_elem(&ruby_procs, &st->pid))
		return st->rb_started && !st->rb_cfp ? MODE_NATIVE : MODE_RUBY_TAIL;
	if (bpf_map_lookup_elem(&perl_procs, &st->pid))
		return st->pl_started ? MODE_NATIVE : MODE_PERL_TAIL; /* Perl emits all its frames at once */
	if (st->py_no_info || (st->py_started && !st->py_frame))
		return MODE_NATIVE;
	return MODE_PY_TAIL;
}

/* One step of the unwind loop, by mode. 0 goes on, 1 ends the loop (bpf_loop accepts nothing else, and the
 * walkers, checked on their own, may return any value as far as the verifier knows). */
static __always_inline long step_by_mode(struct sample *s, struct unwind_state *st)
{
	if (st->mode == MODE_PYTHON)
		return python_step(s, st);
	if (st->mode == MODE_PY_TAIL)
		return py_tail_step(s, st);
	if (st->mode == MODE_PHP || st->mode == MODE_PHP_TAIL)
		return php_step(s, st);
	if (st->mode == MODE_RUBY || st->mode == MODE_RUBY_TAIL)
		return ruby_step(s, st);
	if (st->mode == MODE_PERL || st->mode == MODE_PERL_TAIL)
		return perl_step(s, st);
	return native_step(s, st);
}

static long unwind_step(__u32 index, void *unused)
{
	struct sample *s = get_sample();
	struct unwind_state *st = get_state();
	if (!s || !st)
		return 1;
	st->next = NEXT_NATIVE;
	return step_by_mode(s, st) != 0;
}

/* ---- programs ------------------------------------------------------------------------------------ */

SEC("perf_event")
int unwind_native(struct bpf_perf_event_data *ctx)
{
	struct sample *s = get_sample();
	struct unwind_state *st = get_state();
	if (!s || !st)
		return 0;
	st->next = NEXT_SUBMIT;
	count(STAT_TAIL_CALLS);
	/* An eval-loop frame takes up to three steps (detect, Python frame, resume), so budget three per frame;
	 * the loop ends as soon as the stack does, and the record bounds what is kept. */
	bpf_loop(3 * MAX_USER_FRAMES, unwind_step, NULL, 0);
	if (st->next == NEXT_NATIVE) /* the loop ran out of steps with frames left */
		stop(s, st, UNWIND_ERR_DEPTH_LIMIT);
	return submit(s, st);
}

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u32 pid = pid_tgid >> 32;
	__u32 tid = (__u32)pid_tgid;
	if (pid == 0)
		return 0; /* idle */

	if (!wanted(pid))
		return 0;
	count(STAT_SAMPLES);
	__u32 zero = 0;

	struct sample *s = get_sample();
	struct unwind_state *st = get_state();
	if (!s || !st)
		return 0;
	s->hdr.ktime_ns = bpf_ktime_get_ns();
	s->hdr.pid = pid;
	s->hdr.tid = tid;
	s->hdr.cpu = bpf_get_smp_processor_id();
	s->hdr.num_kernel = 0;
	s->hdr.num_user = 0;
	s->hdr.error = UNWIND_COMPLETE;
	s->hdr.flags = 0;
	s->hdr.labels_tag = 0;
	s->hdr.labels = 0;
	bpf_get_current_comm(s->hdr.comm, sizeof(s->hdr.comm));

	struct task_struct *task = bpf_get_current_task_btf();
	BPF_CORE_READ_STR_INTO(&s->hdr.pcomm, task, group_leader, comm);
	go_labels(s, task, pid);

	__builtin_memset(st, 0, sizeof(*st));
	st->pid = pid;
	st->tid = tid;
	st->pid_known = bpf_map_lookup_elem(&known_pids, &pid) != NULL;
	__u64 started = BPF_CORE_READ(task, group_leader, start_time);
	st->young = bpf_ktime_get_ns() - started < YOUNG_NS;
	st->start_lo = (__u32)started;
	if (st->pid_known) {
		st->lpm_pid = pid;
	} else {
		__u32 *parent = bpf_map_lookup_elem(&forked_from, &pid);
		st->lpm_pid = parent && bpf_map_lookup_elem(&known_pids, parent) ? *parent : 0;
	}

	__u64 cs = *(volatile __u64 *)&ctx->regs.cs; /* ctx fields must be read whole */
	bool in_kernel = (cs & 3) != 3;
	st->in_kernel = in_kernel;
	if (in_kernel) {
		s->hdr.flags |= SAMPLE_FLAG_IN_KERNEL;
		__u64 *kbuf = bpf_map_lookup_elem(&scratch_kstack, &zero);
		if (kbuf) {
			long n = bpf_get_stack(ctx, kbuf, MAX_KERNEL_FRAMES * sizeof(__u64), 0);
			if (n > 0) {
				__u32 nk = n / sizeof(__u64);
				for (__u32 i = 0; i < MAX_KERNEL_FRAMES; i++) {
					if (i >= nk)
						break;
					struct frame *f = &s->frames[i];
					f->id = 0;
					f->addr = kbuf[i];
					f->aux = 0;
					f->kind = FRAME_KERNEL;
					f->flags = 0;
					f->reserved = 0;
				}
				s->hdr.num_kernel = nk > MAX_KERNEL_FRAMES ? MAX_KERNEL_FRAMES : nk;
			}
		}
		if (!BPF_CORE_READ(task, mm)) {
			s->hdr.flags |= SAMPLE_FLAG_KERNEL_THREAD;
			count(STAT_KERNEL_THREAD);
			return submit(s, st);
		}
		struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(task);
		if (!uregs) {
			stop(s, st, UNWIND_ERR_NO_USER_REGS);
			return submit(s, st);
		}
		struct pt_regs regs;
		if (bpf_probe_read_kernel(&regs, sizeof(regs), uregs)) {
			stop(s, st, UNWIND_ERR_NO_USER_REGS);
			return submit(s, st);
		}
		st->pc = regs.ip;
		st->sp = regs.sp;
		st->fp = regs.bp;
		st->rbx = regs.bx;
		struct user_gprs *g = bpf_map_lookup_elem(&user_gprs, &zero);
		if (g)
			FILL_USER_GPRS(g, regs);
		st->regs_live = g != NULL;
	} else {
		st->pc = ctx->regs.ip;
		st->sp = ctx->regs.sp;
		st->fp = ctx->regs.bp;
		st->rbx = ctx->regs.bx;
		struct user_gprs *g = bpf_map_lookup_elem(&user_gprs, &zero);
		if (g)
			FILL_USER_GPRS(g, ctx->regs);
		st->regs_live = g != NULL;
	}
	st->rbx_valid = 1;
	st->return_address = 0;
	bpf_tail_call(ctx, &progs, PROG_NATIVE);
	stop(s, st, UNWIND_ERR_TAIL_CALLS);
	return submit(s, st);
}

/* ---- process lifecycle --------------------------------------------------------------------------- */

SEC("tp_btf/sched_process_fork")
int on_fork(__u64 *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	__u32 ppid = BPF_CORE_READ(parent, tgid);
	__u32 cpid = BPF_CORE_READ(child, tgid);
	if (ppid == cpid)
		return 0; /* a thread */
	__u32 zero = 0;
	struct sampler_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (cfg && cfg->filter == FILTER_PIDS) {
		if (!bpf_map_lookup_elem(&pid_filter, &ppid))
			return 0;
		__u8 one = 1;
		bpf_map_update_elem(&pid_filter, &cpid, &one, BPF_ANY);
	}
	/* The child starts with its parent's mappings: unwind it with them until its own are read. */
	__u32 *grand = bpf_map_lookup_elem(&forked_from, &ppid);
	__u32 source = bpf_map_lookup_elem(&known_pids, &ppid) ? ppid : (grand ? *grand : 0);
	if (source)
		bpf_map_update_elem(&forked_from, &cpid, &source, BPF_ANY);
	return 0;
}

/* Remember the new image's own executable and its dynamic loader (the user pc at exec is the loader's
 * entry), so the first samples of a short-lived process need fewer vma lookups. Process context: here the
 * kernel allows several. */
static __always_inline void exec_prefill(struct task_struct *task, __u32 pid)
{
	__u64 addrs[2];
	addrs[0] = BPF_CORE_READ(task, mm, start_code);
	addrs[1] = 0;
	struct pt_regs *uregs = (struct pt_regs *)bpf_task_pt_regs(task);
	if (uregs)
		bpf_probe_read_kernel(&addrs[1], sizeof(addrs[1]), &uregs->ip);
	for (int i = 0; i < 2; i++) {
		struct vma_probe *vp = vma_slot(VMA_SLOT_EXEC);
		if (!vp || !addrs[i] || find_vma_into(task, addrs[i], VMA_SLOT_EXEC, vp))
			continue;
		if (vp->has_file)
			vma_cache_add(pid, vp);
	}
}

SEC("tp_btf/sched_process_exec")
int on_exec(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	__u32 pid = BPF_CORE_READ(task, tgid);
	if (!wanted(pid))
		return 0;
	bpf_map_delete_elem(&known_pids, &pid);
	bpf_map_delete_elem(&reported_pids, &pid);
	bpf_map_delete_elem(&vma_cache, &pid);
	bpf_map_delete_elem(&forked_from, &pid);
	exec_prefill(task, pid);
	struct pid_event ev = {.type = EVENT_EXEC, .pid = pid};
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0) == 0)
		count(STAT_EVENTS);
	else
		count(STAT_EVENTS_LOST);
	return 0;
}

extern int bpf_iter_task_vma_new(struct bpf_iter_task_vma *it, struct task_struct *task, __u64 addr) __ksym __weak;
extern struct vm_area_struct *bpf_iter_task_vma_next(struct bpf_iter_task_vma *it) __ksym __weak;
extern void bpf_iter_task_vma_destroy(struct bpf_iter_task_vma *it) __ksym __weak;

#define VM_EXEC_FLAG 0x4

/* A young process exits, its memory still mapped (the exit tracepoint runs before exit_mm on kernels
 * >= 6.16; earlier ones show no mm and this does nothing): cache its executable file mappings, so its
 * deferred samples can still be unwound through the files it mapped after exec, when it exited before the
 * agent read its maps. In process context any number of vmas may be read (a sample may read only one). */
static __always_inline void exit_fill_vmas(struct task_struct *task, __u32 pid)
{
	if (!bpf_iter_task_vma_new || !BPF_CORE_READ(task, mm))
		return;
	if (bpf_ktime_get_ns() - BPF_CORE_READ(task, group_leader, start_time) >= YOUNG_NS)
		return;
	struct vma_cache *c = bpf_map_lookup_elem(&vma_cache, &pid);
	if (!c) {
		bpf_map_update_elem(&vma_cache, &pid, &empty_vma_cache, BPF_NOEXIST);
		c = bpf_map_lookup_elem(&vma_cache, &pid);
		if (!c)
			return;
	}
	/* The whole map in address order (the executable first), replacing what samples cached one by one. */
	for (int i = 0; i < VMA_CACHE_SLOTS; i++) {
		c->e[i].start = 0;
		c->e[i].end = 0;
	}
	c->next = 0;
	struct bpf_iter_task_vma it;
	struct vm_area_struct *vma;
	/* No counters in registers: the iterator ends the loop (the verifier checks one iteration), the slot
	 * index lives in the map value. */
	bpf_iter_task_vma_new(&it, task, 0);
	while ((vma = bpf_iter_task_vma_next(&it))) {
		struct file *f = vma->vm_file;
		if (!f || !(vma->vm_flags & VM_EXEC_FLAG))
			continue;
		__u32 slot = c->next;
		if (slot >= VMA_CACHE_SLOTS)
			break;
		struct inode *inode = f->f_inode;
		struct vma_cache_entry *e = &c->e[slot];
		e->start = vma->vm_start;
		e->end = vma->vm_end;
		e->pgoff = vma->vm_pgoff;
		e->dev = BPF_CORE_READ(inode, i_sb, s_dev);
		e->ino = BPF_CORE_READ(inode, i_ino);
		e->mtime_ns = inode_mtime_ns(inode);
		c->next = slot + 1;
	}
	bpf_iter_task_vma_destroy(&it);
}

SEC("tp_btf/sched_process_exit")
int on_exit(__u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	__u32 pid = BPF_CORE_READ(task, pid);
	__u32 tgid = BPF_CORE_READ(task, tgid);
	if (pid != tgid || !wanted(tgid))
		return 0;
	exit_fill_vmas(task, tgid);
	bpf_map_delete_elem(&known_pids, &tgid);
	bpf_map_delete_elem(&reported_pids, &tgid);
	struct pid_event ev = {.type = EVENT_EXIT, .pid = tgid};
	if (bpf_ringbuf_output(&events, &ev, sizeof(ev), 0) == 0)
		count(STAT_EVENTS);
	else
		count(STAT_EVENTS_LOST);
	return 0;
}
