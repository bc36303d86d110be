/* Zend engine (PHP) frame walking: the per-process layout the BPF PHP walker reads.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/interpreters/php/procinfo.py (same
 * field names), checked by tests/unit/test_layouts.py. Userspace fills one `struct php_proc_info` per process
 * from the layout rows of interpreters/php/layouts.py; the BPF code knows no PHP version.
 *
 * Walk (interpreters/php/walker.py does the same in userspace, as the reference):
 *   ex = *(u64 *)current_execute_data (&EG(current_execute_data) in the process);
 *   each time the native unwinder's pc is in execute_ex, emit frames from the saved cursor ex:
 *     loop { func = *(ex + ex_func); prev = *(ex + ex_prev);
 *            func == 0: a dummy frame (zend_call_function's, for includes and magic calls): skip it;
 *            else type = *(u8 *)(func + fn_type): 1 internal, 2 user, 4 eval, anything else ends the walk;
 *                 line = type != 1 && opline ? *(u32 *)(opline + op_lineno) : 0, opline = *(ex + ex_opline);
 *                 emit FRAME_PHP (id = func, addr = line, aux = php_func_cookie(name, scope, type));
 *            ex = prev; if the frame's call info (u32 at ex_call_info) has PHP_CALL_TOP: break }
 *   back to native: PHP_CALL_TOP marks a frame entered from C (zend_execute, zend_call_function), the last
 *   one its execute_ex native frame stands for.
 * JIT (HYBRID VM): opcache's JIT'd code is jumped to from execute_ex's dispatch (`jmp *(%r15)`) and runs on
 * execute_ex's stack frame, so a pc in [jit_start, jit_end) is unwound as execute_ex at jit_dispatch: the PHP
 * walker is entered there, and the native unwinder goes on with execute_ex's CFA rule. The agent reads the
 * buffer from the maps; until it has, BPF looks at the vma of an anonymous pc (executable and shared: opcache's
 * shared memory) and keeps what it found in the process's entry.
 */
#ifndef FLEETPROF_PHP_OFFSETS_H
#define FLEETPROF_PHP_OFFSETS_H

#define PHP_CALL_TOP (1u << 17) /* ZEND_CALL_TOP in Z_TYPE_INFO(execute_data->This) */
#define PHP_FN_INTERNAL 1
#define PHP_FN_USER 2
#define PHP_FN_EVAL 4

struct php_proc_info {
	__u64 current_execute_data; /* &EG(current_execute_data), a runtime address of the process */
	__u8 ex_opline;             /* zend_execute_data.opline */
	__u8 ex_func;               /* zend_execute_data.func */
	__u8 ex_call_info;          /* zend_execute_data.This.u1.type_info */
	__u8 ex_prev;               /* zend_execute_data.prev_execute_data */
	__u8 fn_type;               /* zend_function.type */
	__u8 fn_name;               /* zend_function.common.function_name */
	__u8 fn_scope;              /* zend_function.common.scope */
	__u8 op_lineno;             /* zend_op.lineno */
	__u16 version;              /* major << 8 | minor, for the agent's own accounting */
	__u16 reserved0;
	__u32 jit_probed;           /* BPF's own: when (ns >> 20) it last looked for the JIT buffer's vma */
	__u64 jit_start;            /* [jit_start, jit_end): opcache's JIT buffer in the process, 0 when unknown */
	__u64 jit_end;
	__u64 jit_dispatch;         /* execute_ex's dispatch jump (runtime address + 1): JIT'd code stands for it;
	                             * 0 when the engine has none (no HYBRID VM), then JIT'd code isn't walked */
};                                  /* 48 bytes */

/* A frame's aux: its zend_function's name and scope pointers and type folded to 32 bits, so the agent does
 * not name a freed and reused zend_function address after another function. */
static inline __u32 php_func_cookie(__u64 name, __u64 scope, __u8 type)
{
	__u64 scope31 = scope * 31;
	return (__u32)(name ^ (name >> 32) ^ scope31 ^ (scope31 >> 32) ^ type);
}

#endif
