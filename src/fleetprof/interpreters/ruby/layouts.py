"""CRuby struct layouts (x86-64): the offsets the Ruby walker and namer read, one row per minor version.

The 3.1 row was written from Ruby 3.1's vm_core.h/iseq.h/method.h definitions and is checked field by
field with `offsetof` against the interpreter's own internal headers (ruby3.1-dev ships them all in
`rb_mjit_min_header-3.1.2.h`; tests/unit/test_ruby_layouts.py re-checks every such header on the machine).
Other versions have no row: their structs move (rb_control_frame_t grows in 3.3, RString's length moves
out of the flags in 3.2, classes keep their path in rb_classext from 3.3) and no headers were at hand to
check a row against.
"""

from __future__ import annotations

from dataclasses import dataclass

# Value tags and object types (include/ruby/internal/value_type.h, fl_type.h), stable across 3.x.
T_MASK = 0x1F
T_STRING = 0x05
T_ARRAY = 0x07
T_CLASS = 0x02
T_MODULE = 0x03
T_ICLASS = 0x1C
T_IMEMO = 0x1A
FL_USHIFT = 12
FL_SINGLETON = 1 << FL_USHIFT  # FL_USER0 on a class: a singleton class
IMEMO_MASK = 0x0F  # imemo type: (flags >> FL_USHIFT) & IMEMO_MASK
IMEMO_SVAR = 2
IMEMO_MENT = 6
IMEMO_ISEQ = 7

# Frames (vm_core.h): flags live in ep[0]; ep[-1] is the specval (previous ep | 0b11 tag bits for
# non-local frames), ep[-2] the method entry, cref or svar.
VM_FRAME_MAGIC_MASK = 0x7FFF0001
VM_FRAME_MAGIC_CFUNC = 0x55550001
VM_FRAME_MAGIC_DUMMY = 0x79990001  # the frames ruby_exec_node and thread starts push below user code
VM_FRAME_FLAG_FINISH = 0x0020  # entered from C (rb_vm_exec): the last Ruby frame of its VM loop
VM_FRAME_FLAG_CFRAME = 0x0080
VM_ENV_FLAG_LOCAL = 0x0002
VM_METHOD_TYPE_ISEQ = 0
VM_METHOD_TYPE_CFUNC = 1
ISEQ_TYPE_METHOD = 1
ISEQ_TYPE_BLOCK = 2
QNIL = 0x08

# IDs and the global symbol table (symbol.c): ids is an Array of Arrays of ID_ENTRY_UNIT (str, sym) pairs.
ID_SCOPE_SHIFT = 4
LAST_OP_ID = 0xA9  # tLAST_OP_ID: IDs up to it are operators, their serial is the ID itself
ID_ENTRY_UNIT = 512
ID_ENTRY_SIZE = 2

# iseq.c succ_index_table: 6 u64 words of 9 7-bit ranks for positions < 54, then 80-byte blocks of 512
# positions: u32 rank, u64 of 7 9-bit small-block ranks, 8 u64 bit words.
SUCC_IMMEDIATE = 54
SUCC_IMM_BYTES = 48
SUCC_BLOCK_BYTES = 80
SUCC_BLOCK_SMALL_RANKS = 8
SUCC_BLOCK_BITS = 16


@dataclass(frozen=True, slots=True)
class RubyLayout:
    """Every offset the walker and namer read in one Ruby minor version (x86-64)."""

    version: tuple[int, int]
    source: str  # "headers": offsetof checked against the interpreter's own headers
    ec_vm_stack: int  # rb_execution_context_t.vm_stack (VALUE *)
    ec_vm_stack_size: int  # .vm_stack_size (size_t, in VALUEs)
    ec_cfp: int  # .cfp: the running control frame
    cfp_pc: int  # rb_control_frame_t.pc (next instruction)
    cfp_iseq: int  # .iseq (rb_iseq_t *; NULL or garbage for C frames)
    cfp_self: int
    cfp_ep: int  # .ep (environment pointer: ep[0] flags, ep[-1] specval, ep[-2] me/cref)
    cfp_size: int  # sizeof(rb_control_frame_t): the stride to the caller's frame
    iseq_body: int  # rb_iseq_t.body
    body_type: int  # rb_iseq_constant_body.type (u32 enum iseq_type)
    body_iseq_encoded: int  # .iseq_encoded (VALUE *): pc - this / 8 is the instruction index
    body_pathobj: int  # .location.pathobj (String, or Array [path, realpath])
    body_base_label: int  # .location.base_label (String: "foo" for "block in foo")
    body_label: int  # .location.label (String)
    body_first_lineno: int  # .location.first_lineno (Fixnum)
    body_insns_info: int  # .insns_info.body (iseq_insn_info_entry *)
    body_insns_info_size: int  # .insns_info.size (u32)
    body_succ_index_table: int  # .insns_info.succ_index_table
    body_local_iseq: int  # .local_iseq: the method (or top) iseq a block belongs to
    insn_info_entry_size: int  # sizeof(struct iseq_insn_info_entry)
    insn_info_line_no: int  # .line_no (int)
    me_defined_class: int  # rb_callable_method_entry_t.defined_class
    me_def: int  # .def (rb_method_definition_t *)
    me_called_id: int
    me_owner: int
    def_body: int  # rb_method_definition_t.body (body.iseq.iseqptr for ISEQ methods); type: low 4 bits @0
    def_original_id: int  # .original_id (ID)
    svar_cref_or_me: int  # struct vm_svar.cref_or_me
    ractor_running_ec: int  # rb_ractor_t.threads.running_ec (the thread holding the GVL)
    ractor_main_thread: int  # rb_ractor_t.threads.main (rb_thread_t *)
    thread_ec: int  # rb_thread_t.ec
    vm_main_ractor: int  # rb_vm_t.ractor.main_ractor
    str_len: int  # RString.as.heap.len (NOEMBED strings)
    str_ptr: int  # RString.as.heap.ptr
    str_embed: int  # RString.as.embed.ary (length in the flags)
    str_embed_len_mask: int
    str_embed_len_shift: int
    str_noembed: int  # RSTRING_NOEMBED flag
    ary_len: int  # RArray.as.heap.len
    ary_ptr: int  # RArray.as.heap.ptr
    ary_embed: int  # RArray.as.ary (length in the flags)
    ary_embed_flag: int
    ary_embed_len_mask: int
    ary_embed_len_shift: int
    class_ext: int  # RClass.ptr (rb_classext_t *)
    classext_iv_tbl: int  # rb_classext_t.iv_tbl (st_table * of ID -> VALUE: __classpath__, __attached__)
    st_entries_start: int  # st_table.entries_start
    st_entries_bound: int
    st_entries: int  # st_table.entries (st_table_entry *)
    st_entry_size: int  # sizeof(st_table_entry) {hash, key, record} (st.c: opaque to the headers)
    st_entry_key: int
    st_entry_record: int
    symbols_ids: int  # rb_symbols_t.ids (symbol.h: {last_id, str_sym, ids, dsymbol_fstr_hash})

    @property
    def ec_read_size(self) -> int:
        """Bytes of the execution context one read covers: vm_stack, vm_stack_size and cfp."""
        return max(self.ec_vm_stack, self.ec_vm_stack_size, self.ec_cfp) + 8

    @property
    def cfp_read_size(self) -> int:
        """Bytes of a control frame one read covers: pc, iseq and ep."""
        return max(self.cfp_pc, self.cfp_iseq, self.cfp_ep) + 8


_ROWS: dict[tuple[int, int], RubyLayout] = {
    (3, 1): RubyLayout(
        version=(3, 1),
        source="headers",
        ec_vm_stack=0,
        ec_vm_stack_size=8,
        ec_cfp=16,
        cfp_pc=0,
        cfp_iseq=16,
        cfp_self=24,
        cfp_ep=32,
        cfp_size=64,  # pc, sp, iseq, self, ep, block_code, __bp__, jit_return
        iseq_body=16,
        body_type=0,
        body_iseq_encoded=8,
        body_pathobj=64,
        body_base_label=72,
        body_label=80,
        body_first_lineno=88,
        body_insns_info=120,
        body_insns_info_size=136,
        body_succ_index_table=144,
        body_local_iseq=176,
        insn_info_entry_size=12,  # line_no, node_id, events
        insn_info_line_no=0,
        me_defined_class=8,
        me_def=16,
        me_called_id=24,
        me_owner=32,
        def_body=8,
        def_original_id=32,
        svar_cref_or_me=8,
        ractor_running_ec=520,
        ractor_main_thread=528,
        thread_ec=40,
        vm_main_ractor=32,
        str_len=16,
        str_ptr=24,
        str_embed=16,
        str_embed_len_mask=0x1F << 14,
        str_embed_len_shift=14,
        str_noembed=1 << 13,
        ary_len=16,
        ary_ptr=32,
        ary_embed=16,
        ary_embed_flag=1 << 13,
        ary_embed_len_mask=0x3 << 15,
        ary_embed_len_shift=15,
        class_ext=24,
        classext_iv_tbl=8,
        st_entries_start=32,
        st_entries_bound=40,
        st_entries=48,
        st_entry_size=24,
        st_entry_key=8,
        st_entry_record=16,
        symbols_ids=16,
    ),
}

SUPPORTED = tuple(sorted(_ROWS))


def layout_for(major: int, minor: int) -> RubyLayout | None:
    """The layout of Ruby `major.minor`, None when fleetprof has no row for it."""
    return _ROWS.get((major, minor))


def supported_text() -> str:
    """The covered versions as a short phrase for reasons: "3.1"."""
    return ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED)
