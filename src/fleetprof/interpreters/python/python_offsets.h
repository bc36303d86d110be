/* CPython frame walking: the per-process layout the BPF Python walker reads, and the record it emits.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/interpreters/python/procinfo.py
 * (same field names) and a test compiles this header with gcc to compare sizes and offsets.
 * The BPF code knows nothing about CPython versions: userspace fills one `struct py_proc_info` per process
 * (fleetprof.interpreters.python.process.proc_info) from per-version tables (3.8-3.12) or the target's own
 * _Py_DebugOffsets (3.13+). Every offset is a byte offset inside the named C struct; PY_OFF_NONE marks a
 * field this version does not have. All pointers are user-space addresses of the target process.
 *
 * Walk, per sampled thread (interpreters/python/walker.py does exactly this in userspace, as a reference):
 *   tstate: cached per tid (re-check its thread_id on use); else interp = *(runtime_addr + runtime_interp_head),
 *           and for each interp (via interp_next; the main one is enough without subinterpreters) each
 *           tstate (from interp_tstate_head via tstate_next), pick the one whose
 *           u64 at tstate_thread_id == task fsbase (pthread_t == thread pointer on x86-64 glibc and musl),
 *           or, with PY_F_NATIVE_TID and a task in the root pid namespace, u64 at tstate_native_tid == tid.
 *   first frame: f = *(tstate + tstate_frame); with PY_F_CFRAME, f = *(f + cframe_current_frame).
 *   each time the native unwinder's PC is in the eval loop, emit frames from the saved cursor f:
 *     PY_WALK_FRAMEOBJECT (3.8-3.10): emit f, cursor = *(f + frame_previous); back to native (one frame).
 *     PY_WALK_IS_ENTRY (3.11): loop { emit f; entry = *(u8 *)(f + frame_entry); f = *(f + frame_previous);
 *                              if (entry) break; }  back to native.
 *     PY_WALK_SHIM (3.12+): loop { if (*(u8 *)(f + frame_entry) >= owner_shim_min) { f = *(f + frame_previous);
 *                           break; }  emit f; f = *(f + frame_previous); }  back to native. Shim frames
 *                           (the C-stack entry frame, 3.14's interpreter base frame) are never emitted.
 *   stop at f == 0; bound the loop; a frame whose code pointer fails the PyCode_Type check ends the walk.
 *   emit f: code = *(f + frame_code) (& ~3 with PY_F_EXEC_TAGGED); if code_type_addr and
 *           *(code + ob_type) != code_type_addr: stop with an error.
 *           lasti: PY_F_LASTI_PTR: p = *(u64 *)(f + frame_lasti); d = (s64)(p - (code + code_adaptive));
 *                  lasti = d < 0 ? PY_LASTI_NONE : (__u32)(d >> 1);   (code units of co_code_adaptive)
 *                  else v = *(s32 *)(f + frame_lasti); lasti = v < 0 ? PY_LASTI_NONE : v >> lasti_shift;
 *           checksum: py_code_checksum() over the fields named below, read from the code object.
 *           first sight: the first time (pid, start time, code, checksum) is emitted (`py_code_seen`), send a
 *           struct py_code_record (co_qualname, co_filename, the line table's head) on the `py_codes` ring:
 *           userspace names the frame from it when the object or the process is gone (captured.py).
 */
#ifndef FLEETPROF_PYTHON_OFFSETS_H
#define FLEETPROF_PYTHON_OFFSETS_H

#define PY_OFF_NONE 0xffff       /* the field does not exist in this version */
#define PY_LASTI_NONE 0xffffffffu /* the frame has not executed an instruction yet: line = co_firstlineno */

/* How frames map to eval-loop calls (walk_kind). */
#define PY_WALK_FRAMEOBJECT 1    /* 3.8-3.10: PyFrameObject chain (f_back); one eval-loop call per frame */
#define PY_WALK_IS_ENTRY 2       /* 3.11: _PyInterpreterFrame chain; a frame with is_entry != 0 is the first
                                  * (outermost) frame of its eval-loop call */
#define PY_WALK_SHIM 3           /* 3.12+: _PyInterpreterFrame chain; each eval-loop call pushes a shim frame
                                  * (owner >= owner_shim_min) below its first frame: hide it, end the call */

/* Flags. */
#define PY_F_CFRAME 0x01         /* tstate_frame points at a _PyCFrame (3.11, 3.12): deref cframe_current_frame */
#define PY_F_LASTI_PTR 0x02      /* frame_lasti is a _Py_CODEUNIT pointer (3.11+), else an int f_lasti */
#define PY_F_EXEC_TAGGED 0x04    /* frame_code is a tagged _PyStackRef: clear the low 2 bits (3.14) */
#define PY_F_NATIVE_TID 0x08     /* tstate_native_tid is valid (3.11+): the kernel tid, as the process sees it */

struct py_proc_info {
	__u64 runtime_addr;          /* &_PyRuntime in the process: ELF address + load bias */
	__u64 code_type_addr;        /* &PyCode_Type in the process; 0 = do not check code objects' type */
	__u16 version;               /* major << 8 | minor, e.g. 0x030b */
	__u8 walk_kind;              /* PY_WALK_* */
	__u8 flags;                  /* PY_F_* */
	__u8 owner_shim_min;         /* PY_WALK_SHIM: a frame with owner >= this is a shim (3 for 3.12-3.14) */
	__u8 lasti_shift;            /* !PY_F_LASTI_PTR: code units = f_lasti >> lasti_shift (1: 3.8/3.9 bytes) */
	__u16 reserved0;             /* zero */
	/* finding the thread state */
	__u16 runtime_interp_head;   /* _PyRuntimeState.interpreters.head (PyInterpreterState *) */
	__u16 interp_next;           /* PyInterpreterState.next */
	__u16 interp_tstate_head;    /* PyInterpreterState.tstate_head (<=3.10) / threads.head (3.11+) */
	__u16 tstate_next;           /* PyThreadState.next */
	__u16 tstate_thread_id;      /* PyThreadState.thread_id: unsigned long, pthread_self() */
	__u16 tstate_native_tid;     /* PyThreadState.native_thread_id: unsigned long, gettid(); PY_OFF_NONE <=3.10 */
	__u16 tstate_frame;          /* PyThreadState.frame (<=3.10) / cframe (3.11, 3.12) / current_frame (3.13+) */
	__u16 cframe_current_frame;  /* _PyCFrame.current_frame with PY_F_CFRAME, else PY_OFF_NONE */
	/* frames */
	__u16 frame_previous;        /* PyFrameObject.f_back / _PyInterpreterFrame.previous */
	__u16 frame_code;            /* f_code / f_executable (PyCodeObject *) */
	__u16 frame_lasti;           /* f_lasti (int) / prev_instr (3.11, 3.12) / instr_ptr (3.13+) */
	__u16 frame_entry;           /* u8: is_entry (3.11) / owner (3.12+); PY_OFF_NONE <=3.10 */
	/* code objects */
	__u16 code_adaptive;         /* offsetof(PyCodeObject, co_code_adaptive) with PY_F_LASTI_PTR, else 0 */
	__u16 code_firstlineno;      /* co_firstlineno, int */
	__u16 code_argcount;         /* co_argcount, int */
	__u16 code_filename;         /* co_filename, PyObject * */
	__u16 code_name;             /* co_name, PyObject * */
	__u16 ob_type;               /* offsetof(PyObject, ob_type) */
	/* what a code record (struct py_code_record) copies */
	__u16 code_qualname;         /* co_qualname (3.11+), else co_name: PyObject * (str) */
	__u16 code_linetable;        /* co_linetable (3.10+) / co_lnotab: PyObject * (bytes) */
	__u16 var_ob_size;           /* PyVarObject.ob_size: a bytes object's length */
	__u16 bytes_sval;            /* PyBytesObject.ob_sval: a bytes object's data */
	__u16 unicode_length;        /* PyASCIIObject.length: characters */
	__u16 unicode_state;         /* PyASCIIObject.state: u32 bit fields (PY_STATE_*) */
	__u16 unicode_ascii_size;    /* sizeof(PyASCIIObject): compact ASCII data follows */
	__u16 unicode_compact_size;  /* sizeof(PyCompactUnicodeObject): compact non-ASCII data follows */
};                               /* 80 bytes */

/* What the BPF walker sends per Python frame; userspace symbolizes it from process memory. */
struct py_frame_record {
	__u64 code;                  /* PyCodeObject address in the process */
	__u32 lasti;                 /* instruction offset in code units (2 bytes), or PY_LASTI_NONE */
	__u32 checksum;              /* py_code_checksum() of the code object when it was sampled */
};                               /* 16 bytes */

/* PyASCIIObject.state bits, the same in every supported version (layouts.STATE_BITS). */
#define PY_STATE_KIND_SHIFT 2        /* kind: 3 bits, bytes per character (1, 2, 4) */
#define PY_STATE_COMPACT_SHIFT 5     /* compact: the characters follow the object header */
#define PY_STATE_ASCII_SHIFT 6       /* ascii: compact ASCII, data at unicode_ascii_size */

/* Sizes of what a code record copies: the bytes of co_qualname (its head), co_filename (its tail when
 * longer: the file name matters more than the directories) and the head of the line table. */
#define PY_CODE_NAME_MAX 96
#define PY_CODE_FILE_MAX 160
#define PY_CODE_TABLE_MAX 512

/* The identity of a code object, sent once per (process, code object, checksum) the first time the walker
 * emits it (`py_code_seen`), so userspace names its frames after the object or the process is gone. */
#define PY_CODE_F_FILE_TAIL 0x01     /* file holds the last file_len bytes of a longer co_filename */

struct py_code_record {
	__u64 code;                  /* PyCodeObject address in the process */
	__u32 pid;
	__u32 checksum;              /* as in struct py_frame_record */
	__s32 firstlineno;           /* co_firstlineno */
	__u32 table_size;            /* bytes of the whole line table (table holds the first table_len) */
	__u16 version;               /* py_proc_info.version: the line table's format */
	__u16 name_len;              /* bytes in name */
	__u16 file_len;              /* bytes in file */
	__u16 table_len;             /* bytes in table */
	__u8 name_kind;              /* bytes per character of name (1, 2, 4); 0: not captured */
	__u8 file_kind;              /* the same for file */
	__u8 flags;                  /* PY_CODE_F_* */
	__u8 reserved0;
	__u32 reserved1;
	char name[PY_CODE_NAME_MAX];
	char file[PY_CODE_FILE_MAX];
	__u8 table[PY_CODE_TABLE_MAX];
};                               /* 808 bytes */

/* Key of `py_code_seen`: a code object of one process (start time tells a reused pid apart). */
struct py_code_key {
	__u64 code;
	__u32 pid;
	__u32 checksum;
	__u32 start;                 /* low 32 bits of the process's start time (ns) */
	__u32 reserved;
};                               /* 24 bytes */

/* Checksum of a code object: tells userspace whether the object now at `code` is the one sampled.
 * FNV-1a over 32-bit words: co_firstlineno, co_argcount, then each of co_filename and co_name folded to
 * 32 bits (low ^ high). Every field is immutable for the code object's lifetime and every _Py_DebugOffsets
 * names it, so 3.13+ needs no guessed offsets. Cost in BPF: two reads (the two ints; the two adjacent
 * pointers) and four xor/multiply steps. */
#define PY_CSUM_BASIS 0x811c9dc5u
#define PY_CSUM_PRIME 0x01000193u

static inline __u32 py_csum_step(__u32 h, __u32 word)
{
	return (h ^ word) * PY_CSUM_PRIME;
}

static inline __u32 py_code_checksum(__u32 firstlineno, __u32 argcount, __u64 filename, __u64 name)
{
	__u32 h = PY_CSUM_BASIS;

	h = py_csum_step(h, firstlineno);
	h = py_csum_step(h, argcount);
	h = py_csum_step(h, (__u32)filename ^ (__u32)(filename >> 32));
	h = py_csum_step(h, (__u32)name ^ (__u32)(name >> 32));
	return h;
}

#endif
