/* HotSpot (JVM) frame walking: the per-process layout the BPF HotSpot step reads, and how its frames travel.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/interpreters/hotspot/procinfo.py
 * (same field names), checked by tests/unit/test_hotspot_procinfo.py. Userspace fills one
 * `struct hotspot_proc_info` per JVM from the VM's own tables (interpreters/hotspot/layouts.py) and its code
 * heaps (CodeCache::_heaps); BPF knows no JDK version.
 *
 * Step, at a pc in anonymous memory of a process in `hotspot_procs`:
 *   the code heap holding pc, then its CodeBlob: from pc's segment step back by the segment map's bytes
 *   (at most HS_MAX_HOPS) to the block start (0), the blob after the HeapBlock header;
 *   the interpreter's blob: an interpreted frame, fp-based: Method* = fp[fp_method], bcp = fp[fp_bcp] (r13 in
 *     the top frame); FRAME_JVM (id = Method*, addr = bci = bcp - (ConstMethod* + constmethod_size),
 *     aux = JVM_FRAME_INTERPRETED); the caller: pc = fp[1], fp = fp[0], sp = fp[fp_sender_sp] (unextended);
 *   any other blob (nmethods, stubs, adapters): FRAME_JVM (id = the blob, addr = pc, aux = JVM_FRAME_COMPILED,
 *     | JVM_AUX_TOP for the interrupted frame, | its compile id << JVM_AUX_COOKIE_SHIFT (read as an nmethod's:
 *     userspace tells nmethods from stubs by their name, and a reused nmethod address by the id)); the caller
 *     by the blob's frame size (words, from sp: pc = sp[size - 1], fp = sp[size - 2]) when it has one and its
 *     frame is built, by [sp] in a leaf whose frame is not built yet, else by the frame pointer.
 */
#ifndef FLEETPROF_HOTSPOT_OFFSETS_H
#define FLEETPROF_HOTSPOT_OFFSETS_H

#define HS_MAX_HEAPS 3
#define HS_MAX_HOPS 48
#define HS_SEGMAP_FREE 0xff
#define HS_CODE_AS_OFFSET 1     /* flags: CodeBlob keeps its code start as an int32 offset (JDK 23+) */
#define HS_COMPLETE_16 2        /* flags: CodeBlob::_frame_complete_offset is an int16 (JDK 23+) */
#define JVM_FRAME_INTERPRETED 1
#define JVM_FRAME_COMPILED 2
#define JVM_AUX_KIND_MASK 15
#define JVM_AUX_TOP 16
#define JVM_AUX_COOKIE_SHIFT 8  /* COMPILED: the blob's compile id (as an nmethod's, low 24 bits) above */
#define JVM_AUX_COOKIE_MASK 0xffffff

struct hotspot_proc_info {
	__u64 heap_low[HS_MAX_HEAPS];   /* each code heap's reserved [low, high) */
	__u64 heap_high[HS_MAX_HEAPS];
	__u64 segmap[HS_MAX_HEAPS];     /* its segment map: one byte per segment */
	__u64 interpreter;              /* the interpreter's CodeBlob */
	__u8 log2_segment[HS_MAX_HEAPS];
	__u8 heap_count;
	__u8 heapblock_size;            /* sizeof(HeapBlock): the blob follows */
	__u8 blob_frame_size;           /* CodeBlob::_frame_size (int32, words) */
	__u8 blob_frame_complete;       /* CodeBlob::_frame_complete_offset (int32 or int16, from the code start) */
	__u8 blob_code_begin;           /* CodeBlob::_code_begin (address), or _code_offset (HS_CODE_AS_OFFSET) */
	__u8 method_const_method;       /* Method::_constMethod */
	__u8 flags;                     /* HS_* */
	__u16 constmethod_size;         /* sizeof(ConstMethod): the bytecodes follow */
	__s8 fp_method;                 /* interpreter frame slots, words from fp */
	__s8 fp_bcp;
	__s8 fp_sender_sp;
	__u8 reserved;
	__u16 nmethod_compile_id;       /* nmethod::_compile_id (int32): the cookie telling a reused address */
	__u16 version;                  /* JDK feature version, for the agent's own accounting */
};                                      /* 104 bytes */

#endif
