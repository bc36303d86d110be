/* CRuby frame walking: the per-process layout the BPF Ruby walker reads.
 *
 * One source of truth for the kernel side; the Python mirror is fleetprof/interpreters/ruby/procinfo.py (same
 * field names), checked by tests/unit/test_ruby_procinfo.py. Userspace fills one `struct ruby_proc_info` per
 * process from the layout rows of interpreters/ruby/layouts.py; the BPF code knows no Ruby version.
 *
 * Walk (interpreters/ruby/walker.py does the same in userspace, as the reference):
 *   ec: tp = task fsbase; dtv = *(tp + 8); block = *(dtv + *(u64 *)module_got * 16) (0 or -1: no TLS yet);
 *       ec = *(block + tls_offset); 0: not a Ruby thread. cfp = *(ec + ec_cfp), the VM stack's end is
 *       *(ec + ec_vm_stack) + *(ec + ec_vm_stack_size) * 8.
 *   each time the native unwinder's pc is in rb_vm_exec, walk control frames from the saved cursor (stride
 *   cfp_size) until one emitted has RB_FRAME_FINISH:
 *     pc, iseq, ep from the frame; flags = ep[0]; the method entry: ep[-2] if it is an imemo ment (or an
 *     svar holding one, local env only), else follow ep = ep[-1] & ~3 up to the local env (bounded);
 *     DUMMY frames are skipped; a Ruby frame (no RB_FRAME_CFRAME) is emitted as FRAME_RUBY (id = iseq,
 *     addr = method entry of an ISEQ method or 0, aux = low 32 bits of pc); a C frame whose method entry is
 *     a CFUNC as (0, method entry, 0); other C frames are skipped.
 */
#ifndef FLEETPROF_RUBY_OFFSETS_H
#define FLEETPROF_RUBY_OFFSETS_H

#define RB_T_MASK 0x1f
#define RB_T_IMEMO 0x1a
#define RB_FL_USHIFT 12
#define RB_IMEMO_MASK 0xf
#define RB_IMEMO_SVAR 2
#define RB_IMEMO_MENT 6
#define RB_FRAME_MAGIC_MASK 0x7fff0001
#define RB_FRAME_MAGIC_DUMMY 0x79990001
#define RB_FRAME_FINISH 0x20
#define RB_FRAME_CFRAME 0x80
#define RB_ENV_LOCAL 0x2
#define RB_METHOD_ISEQ 0
#define RB_METHOD_CFUNC 1
#define RB_MAX_EP_HOPS 16
#define RB_TCB_DTV 8      /* the thread control block's pointer to the dynamic thread vector (x86-64) */
#define RB_DTV_ENTRY 16   /* bytes per DTV entry */

struct ruby_proc_info {
	__u64 module_got;       /* runtime address of libruby's DTPMOD64 GOT slot (its TLS module id) */
	__u64 tls_offset;       /* ruby_current_ec's offset in libruby's TLS block */
	__u8 ec_vm_stack;       /* rb_execution_context_t.vm_stack */
	__u8 ec_vm_stack_size;  /* rb_execution_context_t.vm_stack_size (VALUEs) */
	__u8 ec_cfp;            /* rb_execution_context_t.cfp */
	__u8 cfp_pc;            /* rb_control_frame_t.pc */
	__u8 cfp_iseq;          /* rb_control_frame_t.iseq */
	__u8 cfp_ep;            /* rb_control_frame_t.ep */
	__u8 cfp_size;          /* sizeof(rb_control_frame_t) */
	__u8 me_def;            /* rb_callable_method_entry_t.def */
	__u8 svar_cref_or_me;   /* struct vm_svar.cref_or_me */
	__u8 reserved0[3];
	__u16 version;          /* major << 8 | minor, for the agent's own accounting */
	__u16 reserved1;
};                              /* 32 bytes */

#endif
