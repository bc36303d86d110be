/* SPDX-License-Identifier: GPL-2.0-only OR Apache-2.0 */
/* Layouts shared by the BPF sampler and the agent: sample records, frames, maps' keys and values, events.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/tracer/layout.py and
 * tests/unit/test_layouts.py compiles this header and checks that both agree.
 */
#ifndef FLEETPROF_SAMPLE_H
#define FLEETPROF_SAMPLE_H

#define MAX_FRAMES 1024         /* kernel + user frames per sample (24 KiB: per-CPU values may be 32 KiB) */
#define MAX_KERNEL_FRAMES 127   /* bpf_get_stack's usual limit (perf_event_max_stack) */
#define MAX_USER_FRAMES (MAX_FRAMES - MAX_KERNEL_FRAMES)
#define COMM_LEN 16

/* Frame kinds (struct frame.kind). */
#define FRAME_NATIVE 1      /* id = file id (64-bit key), addr = ELF virtual address */
#define FRAME_NATIVE_RAW 2  /* id = 0, addr = virtual address: no mapping was known in the kernel */
#define FRAME_KERNEL 3      /* id = 0, addr = kernel address */
#define FRAME_PYTHON 4      /* id = code object address, addr = instruction offset (code units), aux = checksum */
#define FRAME_PHP 5         /* id = zend_function address, addr = line (0: internal function), aux = cookie */
#define FRAME_RUBY 6        /* id = iseq (0: a C function), addr = method entry (0: none), aux = pc's low 32 bits */
#define FRAME_PERL 7        /* id = GV or CV, addr = COP, aux = line and context fields (perl_offsets.h PL_AUX_*) */
#define FRAME_V8 8          /* id = SharedFunctionInfo, addr = bytecode offset or Code, aux = kind and pc offset
                             * (v8_offsets.h V8_FRAME_*) */
#define FRAME_JVM 9         /* id = Method* or CodeBlob, addr = bci or pc, aux = kind (hotspot_offsets.h) */

/* Frame flags. */
#define FRAME_FLAG_RETURN_ADDRESS 1 /* addr is a return address: symbolize at addr - 1 */
#define FRAME_FLAG_TAIL 2           /* an interpreter frame (Python, PHP, Ruby) walked after the unwinder
                                     * deferred (the sample's last frames): the agent's replay puts each VM
                                     * loop call's frames in place of that call's native VM-loop frame */
#define FRAME_FLAG_CALL_END 4       /* with TAIL: the outermost interpreter frame of its VM-loop call */

/* Why user-space unwinding stopped (struct sample_header.error). 0 means the stack is whole. */
#define UNWIND_COMPLETE 0
#define UNWIND_ERR_NO_MAPPING 1      /* pc outside every known mapping, and frame pointers failed too */
#define UNWIND_ERR_NO_TABLE_ENTRY 2  /* pc inside a file but not covered by its unwind table */
#define UNWIND_ERR_INVALID_RULE 3    /* the CFI for pc is unsupported or missing */
#define UNWIND_ERR_DEPTH_LIMIT 4     /* more frames than fit in a record */
#define UNWIND_ERR_READ_FAILED 5     /* user memory could not be read (paged out, bad pointer) */
#define UNWIND_ERR_BAD_FRAME 6       /* the stack went the wrong way (loop) or a register was implausible */
#define UNWIND_ERR_TAIL_CALLS 7      /* ran out of tail calls */
#define UNWIND_ERR_PYTHON 8          /* the Python walker could not continue (details in stats) */
#define UNWIND_ERR_NO_USER_REGS 9    /* user registers unavailable */
#define UNWIND_ERR_FRAME_POINTER 10  /* frame-pointer fallback ended on a bad pointer */
#define UNWIND_ERR_NOT_READY 11      /* code in a file whose unwind table the agent had not loaded yet */
#define UNWIND_ERR_PHP 12            /* the PHP walker met an unreadable or implausible frame */
#define UNWIND_ERR_RUBY 13           /* the Ruby walker met an unreadable or implausible frame */
#define UNWIND_ERR_PERL 14           /* the Perl walker met an unreadable or implausible context */
#define UNWIND_ERR_JVM 15            /* the HotSpot step met an unreadable or implausible frame */
#define UNWIND_ERR_COUNT 16

/* Sample flags (struct sample_header.flags). */
#define SAMPLE_FLAG_KERNEL_THREAD 1  /* no user space at all (kernel worker) */
#define SAMPLE_FLAG_IN_KERNEL 2      /* the sample interrupted kernel code */
#define SAMPLE_FLAG_DEFERRED 4       /* stopped at code the agent had not prepared (UNWIND_ERR_NOT_READY): a
                                      * struct stack_snapshot with the same ktime/cpu/tid follows, and the
                                      * agent finishes the unwinding once it has the table; the thread's
                                      * interpreter frames not walked yet follow the native ones (TAIL) */
#define SAMPLE_FLAG_SNAPSHOT 8       /* this record is a struct stack_snapshot, not a struct sample */
#define SAMPLE_FLAG_EXECING 16       /* the task is inside execve: its old user image is gone, its new one
                                      * has not run yet, so the sample has kernel frames only */

struct frame {
	__u64 id;
	__u64 addr;
	__u32 aux;
	__u8 kind;
	__u8 flags;
	__u16 reserved;
};                          /* 24 bytes */

struct sample_header {
	__u64 ktime_ns;         /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	__u32 pid;              /* thread group id in the initial pid namespace */
	__u32 tid;
	__u32 cpu;
	__u16 num_kernel;       /* frames[0, num_kernel): kernel frames, leaf first */
	__u16 num_user;         /* frames[num_kernel, num_kernel + num_user): user frames, leaf first */
	__u16 error;            /* UNWIND_* */
	__u16 flags;            /* SAMPLE_FLAG_* */
	__u32 labels_tag;       /* with `labels`: tells the label set from a later one at the same address */
	__u64 labels;           /* a Go goroutine's pprof label set (go_offsets.h), 0 when none */
	char comm[COMM_LEN];    /* thread name */
	char pcomm[COMM_LEN];   /* process name (the thread group leader's comm) */
};                          /* 72 bytes */

struct sample {
	struct sample_header hdr;
	struct frame frames[MAX_FRAMES];
};

/* Key of the `mappings` LPM trie: (pid, address) with the address big-endian so prefixes work. */
struct mapping_key {
	__u32 prefixlen;        /* 32 (pid) + number of leading address bits that matter */
	__u32 pid;
	__u64 addr_be;
};

/* Mapping flags (struct mapping_info.flags). */
#define MAPPING_FLAG_HAS_TABLE 1       /* an unwind table for file_id is (being) loaded */
#define MAPPING_FLAG_INTERPRETER 2     /* the file holds an interpreter loop: check `interp_ranges` */
#define MAPPING_FLAG_FRAME_POINTERS 4  /* unwind this file with frame pointers */

struct mapping_info {
	__u64 file_id;          /* first 64 bits of the 128-bit file id */
	__u64 bias;             /* runtime address - ELF virtual address */
	__u32 flags;            /* MAPPING_FLAG_* */
	__u32 reserved;
};

/* Where a file's rows live in the global `unwind_rows` array. count == 0: the file has no table (it could
 * not be compiled or did not fit): unwind it with frame pointers. No entry: the table is not loaded (yet). */
struct file_table {
	__u32 start;
	__u32 count;
};

/* Key of `file_inodes`: a mapped file as the kernel names it (vma->vm_file's inode), so a process whose
 * maps the agent has not read yet is unwound from its first sample when its files are known. */
struct inode_key {
	__u64 dev;              /* inode->i_sb->s_dev, kernel encoding: major << 20 | minor */
	__u64 ino;
	__u64 mtime_ns;         /* the inode's mtime: a recycled inode number is another file */
};

struct inode_info {
	__u64 file_id;          /* as in struct mapping_info */
	__s64 seg_delta;        /* p_vaddr - p_offset of the file's executable PT_LOAD:
	                         * bias = vm_start - vm_pgoff * 4096 - seg_delta */
	__u32 flags;            /* MAPPING_FLAG_* */
	__u32 reserved;
};

/* File-backed vmas BPF found itself, per process (`vma_cache`): one vma lookup per sample is all the kernel
 * allows in interrupt context (the mmap lock is released by irq_work), so a new process's stacks fill the
 * cache over its first samples (and at exec, its executable and loader); the agent reads it for processes
 * that exited before their maps were read. */
#define VMA_CACHE_SLOTS 32

struct vma_cache_entry {
	__u64 start;            /* the vma, as bpf_find_vma saw it */
	__u64 end;
	__u64 pgoff;
	__u64 dev;              /* its file (struct inode_key), resolved through `file_inodes` when used: the
	                         * file may become known after the vma was seen */
	__u64 ino;
	__u64 mtime_ns;
};                          /* 48 bytes */

struct vma_cache {
	__u32 next;             /* slot the next entry goes to (round robin) */
	__u32 reserved;
	struct vma_cache_entry e[VMA_CACHE_SLOTS];
};

/* A copy of the user stack at the frame where unwinding stopped for want of a table
 * (SAMPLE_FLAG_DEFERRED): registers, the vma holding pc, and the stack from sp upwards. */
#define MAX_SNAPSHOT_STACK (32 << 10)

struct snapshot_regs {
	__u64 pc;
	__u64 sp;
	__u64 fp;
	__u64 file_id;          /* the file holding pc when the kernel knew it (table not loaded), else 0 */
	__u64 bias;             /* its load bias */
	__u64 vm_start;         /* else the vma holding pc (0 when unknown) */
	__u64 vm_end;
	__u64 vm_pgoff;         /* its file offset in pages */
	__u64 dev;              /* its file, as in struct inode_key */
	__u64 ino;
	__u64 mtime_ns;
	__u64 rbx;              /* the frame's rbx, when rbx_valid */
	__u64 gprs[17];         /* the frame's general registers in struct sigcontext's order, when regs_live */
	__u32 stack_size;       /* bytes of stack copied from sp */
	__u8 return_address;    /* pc is a return address */
	__u8 pushed;            /* the frame at pc is already the sample's last frame */
	__u8 rbx_valid;         /* rbx is known (as struct unwind_state's) */
	__u8 regs_live;         /* gprs are the frame at pc's own: its leaf registers or a sigcontext's */
};                          /* 240 bytes */

struct stack_snapshot {
	struct sample_header hdr; /* flags = SAMPLE_FLAG_SNAPSHOT; ktime_ns, pid, tid, cpu as in its sample */
	struct snapshot_regs regs;
	__u8 stack[MAX_SNAPSHOT_STACK];
};

/* Interpreter loop ranges of a file, ELF virtual addresses; unused slots have start == end == 0. */
#define MAX_INTERP_RANGES 4
#define INTERP_PYTHON 1
#define INTERP_PHP 2
#define INTERP_RUBY 3
#define INTERP_PERL 4
#define INTERP_V8 5
struct interp_ranges {
	__u32 kind;             /* INTERP_* */
	__u32 reserved;
	__u64 start[MAX_INTERP_RANGES];
	__u64 end[MAX_INTERP_RANGES];
};

/* Events from the kernel to the process tracker. */
#define EVENT_NEW_PID 1     /* a sample named a pid the agent has not scanned */
#define EVENT_UNKNOWN_PC 2  /* a pc of a known pid fell outside its known mappings */
#define EVENT_EXEC 3
#define EVENT_EXIT 4

struct pid_event {
	__u32 type;
	__u32 pid;
	__u64 addr;
};

/* Sampler configuration (the one entry of the `config` array). */
#define FILTER_NONE 0       /* whole host */
#define FILTER_PIDS 1       /* only pids in `pid_filter`; children are added on fork */

struct sampler_config {
	__u32 filter;
	__u32 reserved;
};

/* Counters (index into the per-CPU `stats` array). */
#define STAT_SAMPLES 0
#define STAT_SAMPLES_SUBMITTED 1
#define STAT_RINGBUF_FULL 2
#define STAT_KERNEL_THREAD 3
#define STAT_EVENTS 4
#define STAT_EVENTS_LOST 5
#define STAT_NATIVE_FRAMES 6
#define STAT_FP_FRAMES 7
#define STAT_TABLE_FRAMES 8
#define STAT_SIGNAL_FRAMES 9
#define STAT_PLT_FRAMES 10
#define STAT_PYTHON_FRAMES 11
#define STAT_TAIL_CALLS 12
#define STAT_VMA_RESOLVED 13 /* mappings found through the task's vma (maps not read yet) */
#define STAT_SNAPSHOTS 14    /* stack snapshots sent for deferred unwinding */
#define STAT_SNAPSHOTS_LOST 15 /* snapshots that did not fit the ring buffer */
#define STAT_ERROR_BASE 16  /* STAT_ERROR_BASE + UNWIND_* */
#define STAT_PY_ERROR_BASE 32 /* STAT_PY_ERROR_BASE + PY_ERR_* (interpreters/python/python_unwind.bpf.h) */
#define STAT_V8_FRAMES 40  /* JavaScript frames named by the V8 step */
#define STAT_JVM_FRAMES 41 /* Java frames (and VM stubs) found by the HotSpot step */
#define STAT_GO_LABELS 42  /* samples of a goroutine with pprof labels */
#define STAT_COUNT 43

/* Programs in the `progs` tail-call array. The unwinder is one program whose bounded loop runs a step
 * machine (native frame | Python frame | ...), so switching runtimes costs no tail call and deep mixed stacks
 * are not limited by the kernel's 33 tail calls. */
#define PROG_NATIVE 0
#define PROG_COUNT 1

#endif
