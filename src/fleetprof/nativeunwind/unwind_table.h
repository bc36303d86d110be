/* Native unwind tables: the layout shared by the BPF unwinder and the userspace table compiler.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/nativeunwind/table.py and
 * tests/unit/test_layouts.py checks the two agree (sizes, offsets, constants).
 *
 * A file's table is a sorted array of rows. Row i covers ELF virtual addresses [pc_i, pc_{i+1}) of that
 * file and names a rule. Code between FDEs and after the last one (no CFI, e.g. V8's embedded builtins)
 * gets UW_CMD_FRAME_POINTER rows. Rules are deduplicated across all files into one global array.
 * Addresses are ELF virtual addresses (what nm/addr2line print): runtime pc - load bias.
 * The return address is always at CFA - 8 (x86-64); the compiler marks any other RA rule INVALID.
 * Besides rbp, rbx is tracked (the caller's rbx saved at CFA + rbx_off) for code whose CFA is rbx-based
 * (glibc's _dl_runtime_resolve_*); UW_CFA_REG rules hold only where the registers came from the sample or
 * from a signal frame's sigcontext (hand-written asm leaves, GCC's stack-realignment prologues).
 */
#ifndef FLEETPROF_UNWIND_TABLE_H
#define FLEETPROF_UNWIND_TABLE_H

/* How to compute the CFA (or, for commands, what to do instead). */
#define UW_CFA_RSP 0          /* CFA = rsp + cfa_off */
#define UW_CFA_RBP 1          /* CFA = rbp + cfa_off */
#define UW_CFA_RSP_DEREF 2    /* CFA = *(u64 *)(rsp + cfa_off) + cfa_aux   (DW_OP_breg7 off; deref; [plus_uconst aux]) */
#define UW_CFA_RBP_DEREF 3    /* CFA = *(u64 *)(rbp + cfa_off) + cfa_aux   (stack realignment: breg6 off; deref) */
#define UW_CFA_PLT 4          /* the standard PLT expression: CFA = rsp + cfa_off + ((pc & 15) >= cfa_aux ? 8 : 0) */
#define UW_CMD_STOP 5         /* outermost frame (return address undefined): the stack is complete */
#define UW_CMD_SIGNAL 6       /* signal trampoline (__restore_rt): registers come from the ucontext at rsp */
#define UW_CMD_FRAME_POINTER 7 /* no CFI for this range: follow the rbp chain */
#define UW_CMD_INVALID 8      /* unsupported or missing rule: stop with an error frame */
#define UW_CFA_RBX 9          /* CFA = rbx + cfa_off (rbx tracked through the callees that saved it) */
#define UW_CFA_REG 10         /* CFA = reg + cfa_off, reg = DWARF number in cfa_aux; only while the registers
                               * are the sample's own or a sigcontext's, else an invalid rule */

/* Where the caller's rbp is. */
#define UW_RBP_SAME 0         /* not saved: the caller's rbp is the current rbp */
#define UW_RBP_AT_CFA 1       /* saved at CFA + rbp_off */
#define UW_RBP_UNDEFINED 2    /* unrecoverable (clobbered); unwinding may go on if rbp is not needed */
#define UW_RBP_AT_RBP 3       /* saved at rbp + rbp_off (DW_CFA_expression breg6; gcc's stack realignment) */

/* Where the caller's rbx is: rbx_off 0 = unchanged, UW_RBX_LOST = unknown, else saved at CFA + rbx_off. */
#define UW_RBX_SAME 0
#define UW_RBX_LOST 1         /* odd, so never a save slot's offset */

struct unwind_rule {
	__u8 cfa_kind;   /* UW_CFA_* or UW_CMD_* */
	__u8 rbp_kind;   /* UW_RBP_* */
	__s16 rbx_off;   /* UW_RBX_SAME, UW_RBX_LOST, or the caller's rbx saved at CFA + rbx_off */
	__s32 cfa_off;
	__s32 cfa_aux;   /* *_DEREF: added after the dereference; UW_CFA_PLT: the (pc & 15) threshold;
	                  * UW_CFA_REG: the DWARF register number */
	__s32 rbp_off;   /* for UW_RBP_AT_CFA and UW_RBP_AT_RBP */
};                   /* 16 bytes */

struct unwind_row {
	__u32 pc;        /* first ELF virtual address the rule applies to */
	__u32 rule;      /* index into the global rule array (file-local index in the compiler's output) */
};                   /* 8 bytes */

#endif
