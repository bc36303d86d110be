/* V8 (Node.js) frame walking: the per-process layout the BPF V8 step reads, and how its frames travel.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/interpreters/v8/procinfo.py (same
 * field names), checked by tests/unit/test_v8_procinfo.py. Userspace fills one `struct v8_proc_info` per
 * process from the binary's postmortem metadata (interpreters/v8/layouts.py); BPF knows no V8 version.
 *
 * Step, at a pc in V8 code (the embedded builtins: `interp_ranges` kind INTERP_V8; or anonymous executable
 * memory of a process in `v8_procs`: JIT code), with fp the frame's frame pointer (V8 always keeps one):
 *   the frame-type slot fp[fp_marker] holds a Smi for typed frames (entry, exit, stub, builtin frames): not
 *   a JavaScript frame, the native frame stays. Else fp[fp_function] is the JSFunction (tagged, its map's
 *   instance type in [jsfunction_first_type, jsfunction_end_type)), and its SharedFunctionInfo names the
 *   frame: FRAME_V8 with id = the SharedFunctionInfo (tagged) and by how the pc relates to the function:
 *     V8_FRAME_CODE: pc inside the JSFunction's current optimized or baseline Code: addr = the Code
 *       (tagged), aux = V8_FRAME_CODE | (pc - its entry) << V8_AUX_SHIFT; the entry is the Code's
 *       code_entry field, or the Code plus code_header where its instructions follow it (V8 10.x);
 *     V8_FRAME_INTERPRETED: pc in the builtins (the binary's, or the copy V8 11.x/12.x remaps into its code
 *       range: a pc within builtins_size of the JSFunction's builtin Code entry minus trampoline_offset),
 *       fp[fp_bytecode_array] a BytecodeArray and
 *       fp[fp_bytecode_offset] a Smi: addr = the bytecode offset (the slot's value minus bytecode_header - 1;
 *       in the interrupted frame the offset register's, when it lies inside the bytecode: the slot is only
 *       written at calls);
 *     V8_FRAME_JIT_INTERPRETED: a JIT pc in a frame with the interpreter's slots where BPF cannot read the
 *       function's Code (jsfunction_code 0: V8 13.x keeps it in a dispatch table): on-stack-replaced code or
 *       the builtins V8 remapped: addr = the pc, aux = the kind | the bytecode offset << V8_AUX_SHIFT; userspace
 *       looks for JIT code holding the pc, else takes the offset;
 *     V8_FRAME_FUNCTION: none of these (on-stack-replaced code, a builtin's JavaScript frame, 13.x's compiled
 *       code): addr = the pc when it is JIT code (userspace looks for the code object holding it), else 0.
 *   Then the caller by the frame pointer chain.
 */
#ifndef FLEETPROF_V8_OFFSETS_H
#define FLEETPROF_V8_OFFSETS_H

#define V8_FRAME_INTERPRETED 1
#define V8_FRAME_CODE 2
#define V8_FRAME_FUNCTION 3
#define V8_FRAME_JIT_INTERPRETED 4
#define V8_AUX_KIND_MASK 15
#define V8_AUX_SHIFT 4
#define V8_HEAP_OBJECT_TAG 1
#define V8_HEAP_OBJECT_TAG_MASK 3
#define V8_SMI_SHIFT 32
#define V8_CODE_KIND_MASK 15
#define V8_CODE_KIND_BUILTIN 2 /* CodeKind::BUILTIN, the same from V8 10.2 to 12.4 */

struct v8_proc_info {
	__s8 fp_marker;           /* frame slots from the frame pointer */
	__s8 fp_function;
	__s8 fp_bytecode_array;
	__s8 fp_bytecode_offset;
	__u8 map_instance_type;   /* Map: uint16 instance type */
	__u8 jsfunction_shared;   /* JSFunction: SharedFunctionInfo */
	__u8 jsfunction_code;     /* JSFunction: Code; 0: none (V8 13.x: through the dispatch table) */
	__u8 code_entry;          /* Code: instruction start (a raw address; V8 11.x on: the InstructionStream's) */
	__u8 code_size;           /* Code: int32 instruction size */
	__u8 bytecode_header;     /* BytecodeArray: header size (where bytecodes start) */
	__u8 offset_register;     /* DWARF number of the interpreter's bytecode offset register (live in a leaf) */
	__u8 code_header;         /* Code: instructions inline this far from its start (V8 10.x), 0: read code_entry */
	__u16 jsfunction_first_type;
	__u16 jsfunction_end_type;
	__u16 bytecode_array_type;
	__u16 version;            /* major << 8 | minor, for the agent's own accounting */
	__u8 code_flags;          /* Code: uint32 flags, the CodeKind in V8_CODE_KIND_MASK */
	__u8 reserved[3];
	__u32 trampoline_offset;  /* InterpreterEntryTrampoline from the embedded builtins' start */
	__u32 builtins_size;      /* the embedded builtins' size; 0: never look for a remapped copy */
};                                /* 32 bytes */

#endif
