"""HotSpot structure offsets (x86-64) for the BPF frame walker and the namer, from the VM's own tables.

Every offset and size comes from VMStructs/VMTypes/VMIntConstants as a running JVM reports them
(`VMValues`, read by process.layout_from_process). What the tables do not hold is below: the interpreter
frame's slots (frame_x86.hpp, identical for JDK 11 to 26), the UNSIGNED5 flavour (JDK 20 stopped using
zero bytes), and where an nmethod keeps its debug info (inside the nmethod up to JDK 22, in its immutable
and mutable data blocks from JDK 25; 23 and 24 are refused: not verified here).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# x86-64 interpreter frame (frame_x86.hpp), in words from the frame pointer: [fp] is the caller's fp,
# [fp+1] the return address. sender_sp and last_sp are checked against the tables' frame:: constants.
FP_SENDER_SP = -1  # frame::interpreter_frame_sender_sp_offset: the caller's sp (unextended)
FP_LAST_SP = -2  # frame::interpreter_frame_last_sp_offset: sp at a call out of this frame, else 0
FP_METHOD = -3  # frame::interpreter_frame_method_offset: the Method*
FP_MIRROR = -4  # the holder's java.lang.Class (JDK 9+)
FP_MDP = -5
FP_CACHE = -6
FP_LOCALS = -7  # JDK 21+: relativized (a word count from fp), before: a pointer
FP_BCP = -8  # frame::interpreter_frame_bcp_offset: the bytecode pointer (live in r13 in the top frame)
FP_INITIAL_SP = -9
WORD = 8

# CodeBlobKind (codeBlob.hpp, JDK 23+): exported as VMIntConstants CodeBlobKind::*; before, kinds by _name.
BLOB_NAME_NMETHOD = "nmethod"
BLOB_NAME_NATIVE_NMETHOD = "native nmethod"
BLOB_NAME_INTERPRETER = "Interpreter"
# The first 8 bytes of CodeBlob::_name as one little-endian word, for a walker that compares one read.
NAME_WORD_NMETHOD = int.from_bytes(b"nmethod\0", "little")
NAME_WORD_NATIVE_NMETHOD = int.from_bytes(b"native n", "little")

SUPPORTED = "JDK 11-22, 25+"
_REFUSED = {23, 24}


@dataclass(frozen=True, slots=True)
class VMValues:
    """The numbers of the VM tables, keyed by name: instance field offsets and C types, static field
    addresses (ELF), type sizes, integer and long constants."""

    fields: dict[str, int]  # "Type::_field" -> byte offset
    field_types: dict[str, str]  # "Type::_field" -> its C type as the table spells it
    statics: dict[str, int]  # "Type::_field" -> ELF virtual address of the static
    sizes: dict[str, int]  # "Type" -> sizeof
    constants: dict[str, int]  # int and long constants (ints sign-extended)


@dataclass(frozen=True, slots=True)
class HotSpotLayout:
    """Every offset the BPF walk and the namer read, in bytes; statics are ELF addresses (add the bias);
    -1 marks a field this JDK does not have (the alternative field is then present)."""

    version: tuple[int, int, int, int]
    # CodeCache::_heaps (static GrowableArray<CodeHeap*>*) and the cache's overall bounds (statics).
    codecache_heaps: int
    codecache_low_bound: int
    codecache_high_bound: int
    growable_len: int  # GrowableArrayBase::_len (GenericGrowableArray::_len before JDK 16; int32)
    growable_data: int  # GrowableArray<int>::_data: the element array (CodeHeap* each)
    codeheap_memory: int  # CodeHeap::_memory: a VirtualSpace (the code)
    codeheap_segmap: int  # CodeHeap::_segmap: a VirtualSpace (one byte per segment)
    codeheap_log2_segment_size: int  # CodeHeap::_log2_segment_size (int32)
    vspace_low_boundary: int  # VirtualSpace::_low_boundary (char*)
    vspace_high_boundary: int
    vspace_low: int  # VirtualSpace::_low: first committed byte
    vspace_high: int  # VirtualSpace::_high: end of the committed bytes
    heapblock_size: int  # sizeof(HeapBlock): the CodeBlob starts this far into its block
    heapblock_length: int  # HeapBlock::_header._length: the block's length in segments
    heapblock_length_width: int  # 8 (size_t, JDK <= 22) or 4 (uint32_t)
    heapblock_used: int  # HeapBlock::_header._used (bool)
    blob_name: int  # CodeBlob::_name (const char*)
    blob_size: int  # CodeBlob::_size (int32): bytes from the blob's start to its end
    blob_kind: int  # CodeBlob::_kind (u8 CodeBlobKind, JDK 23+), -1 before
    blob_frame_size: int  # CodeBlob::_frame_size (int32, in words; return address and saved fp included)
    blob_frame_complete_offset: int  # CodeBlob::_frame_complete_offset: code offset where the frame is built
    blob_frame_complete_width: int  # 4 (int) or 2 (int16_t, JDK 23+)
    blob_code_begin: int  # CodeBlob::_code_begin (address, JDK <= 22), -1 after
    blob_code_end: int  # CodeBlob::_code_end (address, JDK <= 22), -1 after
    blob_code_offset: int  # CodeBlob::_code_offset (int32 from the blob, JDK 23+): code begin, -1 before
    blob_data_offset: int  # CodeBlob::_data_offset (int32 from the blob): code end in JDK 23+
    blob_mutable_data: int  # CodeBlob::_mutable_data (address, JDK 25+: relocations then metadata), -1 before
    blob_relocation_size: int  # CodeBlob::_relocation_size (int32, JDK 25+), -1 before
    blob_mutable_data_size: int  # CodeBlob::_mutable_data_size (int32, JDK 25+): metadata ends there
    kind_nmethod: int  # CodeBlobKind::Nmethod, 0 without kinds
    kind_buffer: int  # CodeBlobKind::Buffer (the interpreter is a BufferBlob named "Interpreter")
    nmethod_method: int  # nmethod::_method (CompiledMethod::_method before JDK 23): Method*
    nmethod_compile_id: int  # nmethod::_compile_id (int32): a cookie telling a reused nmethod address
    nmethod_entry_bci: int  # nmethod::_entry_bci (int32): -1 (InvocationEntryBci) unless OSR
    nmethod_orig_pc_offset: int  # nmethod::_orig_pc_offset (int32): sp offset of a deoptimized frame's pc
    nmethod_deopt_handler: int  # CompiledMethod::_deopt_handler_begin (address, <= 22), -1 after
    nmethod_deopt_handler_offset: int  # nmethod::_deopt_handler_offset (int32 from the blob, 23+), -1 before
    nmethod_scopes_pcs_offset: int  # nmethod::_scopes_pcs_offset (int32): PcDesc array (from blob/immutable)
    nmethod_scopes_pcs_end: int  # the int32 field where the PcDescs end: _dependencies_offset (<= 22) or
    #   _scopes_data_offset (25+), relative like _scopes_pcs_offset
    nmethod_scopes_data: int  # CompiledMethod::_scopes_data_begin (address, <= 22), -1 after
    nmethod_scopes_data_offset: int  # nmethod::_scopes_data_offset (int32 from immutable data, 25+), else -1
    nmethod_metadata_offset: int  # nmethod::_metadata_offset (int32 from the blob, <= 22), -1 after
    nmethod_immutable_data: int  # nmethod::_immutable_data (address, 23+), -1 before
    nmethod_immutable_data_size: int  # nmethod::_immutable_data_size (int32, 23+): scopes data end by then
    method_const_method: int  # Method::_constMethod
    constmethod_constants: int  # ConstMethod::_constants: its ConstantPool*
    constmethod_flags: int  # ConstMethod::_flags (u2, <= 20) or ConstMethod::_flags._flags (u4)
    constmethod_flags_width: int
    constmethod_has_linenumber_table: int  # the flag bit
    constmethod_code_size: int  # ConstMethod::_code_size (u2)
    constmethod_name_index: int  # ConstMethod::_name_index (u2): constant pool index of the name Symbol
    constmethod_signature_index: int
    constmethod_method_size: (
        int  # ConstMethod::_constMethod_size (int32, in words): the line table ends there
    )
    constmethod_size: int  # sizeof(ConstMethod): the bytecodes start here; bci = bcp - (cm + this)
    constantpool_pool_holder: int  # ConstantPool::_pool_holder: InstanceKlass*
    constantpool_source_file_name_index: int  # ConstantPool::_source_file_name_index (u2, JDK 15+), else -1
    instanceklass_source_file_name_index: (
        int  # InstanceKlass::_source_file_name_index (u2, JDK <= 14), else -1
    )
    constantpool_size: int  # sizeof(ConstantPool): the slots (Symbol* for names) follow, 8 bytes each
    klass_name: int  # Klass::_name: Symbol*
    symbol_length: int  # Symbol::_length (u2)
    symbol_body: int  # Symbol::_body: the UTF-8 bytes
    pcdesc_size: int  # sizeof(PcDesc)
    pcdesc_pc_offset: int  # PcDesc::_pc_offset (int32 from code begin)
    pcdesc_scope_decode_offset: int  # PcDesc::_scope_decode_offset (int32 into scopes data; 0: none)
    unsigned5_excludes_zero: bool  # JDK 20+ UNSIGNED5 (bytes offset by 1, no zero byte)
    fp_method: int = FP_METHOD  # interpreter frame slots, in words from fp (see the module constants)
    fp_bcp: int = FP_BCP
    fp_sender_sp: int = FP_SENDER_SP
    fp_last_sp: int = FP_LAST_SP
    fp_locals: int = FP_LOCALS
    missing: tuple[str, ...] = field(default=())  # optional fields the tables lacked (for diagnostics)


_FIELDS = {
    "growable_data": "GrowableArray<int>::_data",
    "codeheap_memory": "CodeHeap::_memory",
    "codeheap_segmap": "CodeHeap::_segmap",
    "codeheap_log2_segment_size": "CodeHeap::_log2_segment_size",
    "vspace_low_boundary": "VirtualSpace::_low_boundary",
    "vspace_high_boundary": "VirtualSpace::_high_boundary",
    "vspace_low": "VirtualSpace::_low",
    "vspace_high": "VirtualSpace::_high",
    "blob_name": "CodeBlob::_name",
    "blob_size": "CodeBlob::_size",
    "blob_frame_size": "CodeBlob::_frame_size",
    "blob_frame_complete_offset": "CodeBlob::_frame_complete_offset",
    "blob_data_offset": "CodeBlob::_data_offset",
    "nmethod_compile_id": "nmethod::_compile_id",
    "nmethod_entry_bci": "nmethod::_entry_bci",
    "nmethod_orig_pc_offset": "nmethod::_orig_pc_offset",
    "nmethod_scopes_pcs_offset": "nmethod::_scopes_pcs_offset",
    "method_const_method": "Method::_constMethod",
    "constmethod_constants": "ConstMethod::_constants",
    "constmethod_code_size": "ConstMethod::_code_size",
    "constmethod_name_index": "ConstMethod::_name_index",
    "constmethod_signature_index": "ConstMethod::_signature_index",
    "constantpool_pool_holder": "ConstantPool::_pool_holder",
    "constmethod_method_size": "ConstMethod::_constMethod_size",
    "klass_name": "Klass::_name",
    "symbol_length": "Symbol::_length",
    "symbol_body": "Symbol::_body",
    "pcdesc_pc_offset": "PcDesc::_pc_offset",
    "pcdesc_scope_decode_offset": "PcDesc::_scope_decode_offset",
}
_OPTIONAL = {  # present in some JDKs only; -1 when absent
    "blob_kind": "CodeBlob::_kind",
    "blob_code_begin": "CodeBlob::_code_begin",
    "blob_code_end": "CodeBlob::_code_end",
    "blob_code_offset": "CodeBlob::_code_offset",
    "blob_mutable_data": "CodeBlob::_mutable_data",
    "blob_relocation_size": "CodeBlob::_relocation_size",
    "nmethod_deopt_handler": "CompiledMethod::_deopt_handler_begin",
    "nmethod_deopt_handler_offset": "nmethod::_deopt_handler_offset",
    "nmethod_scopes_data": "CompiledMethod::_scopes_data_begin",
    "nmethod_metadata_offset": "nmethod::_metadata_offset",
    "nmethod_immutable_data": "nmethod::_immutable_data",
    "nmethod_immutable_data_size": "nmethod::_immutable_data_size",
    "constantpool_source_file_name_index": "ConstantPool::_source_file_name_index",
    "instanceklass_source_file_name_index": "InstanceKlass::_source_file_name_index",
    "blob_mutable_data_size": "CodeBlob::_mutable_data_size",
}
_SIZES = {
    "heapblock_size": "HeapBlock",
    "constmethod_size": "ConstMethod",
    "constantpool_size": "ConstantPool",
    "pcdesc_size": "PcDesc",
}


def _either(values: VMValues, *names: str) -> int | None:
    """The offset of the first of `names` the tables hold."""
    return next((values.fields[name] for name in names if name in values.fields), None)


def layout_from(values: VMValues, version: tuple[int, int, int, int]) -> HotSpotLayout | str:
    """The layout of a JVM of `version` whose tables say `values`, or a one-line reason it can't be had."""
    major = version[0]
    if major in _REFUSED:
        return f"JDK {major} is not covered (fleetprof walks {SUPPORTED})"
    found: dict[str, int] = {}
    for name, key in _FIELDS.items():
        offset = values.fields.get(key)
        if offset is None and name in ("nmethod_compile_id", "nmethod_entry_bci", "nmethod_orig_pc_offset"):
            offset = values.fields.get(key.replace("nmethod::", "CompiledMethod::"))
        if offset is None:
            return f"JDK {major}: VMStructs lacks {key}"
        found[name] = offset
    missing = []
    for name, key in _OPTIONAL.items():
        found[name] = values.fields.get(key, -1)
        if found[name] < 0:
            missing.append(key)
    for name, key in _SIZES.items():
        if key not in values.sizes:
            return f"JDK {major}: VMTypes lacks {key}"
        found[name] = values.sizes[key]
    method = _either(values, "nmethod::_method", "CompiledMethod::_method")
    growable_len = _either(values, "GrowableArrayBase::_len", "GenericGrowableArray::_len")
    if growable_len is None:
        return f"JDK {major}: VMStructs lacks GrowableArrayBase::_len"
    if found["constantpool_source_file_name_index"] < 0 and found["instanceklass_source_file_name_index"] < 0:
        return f"JDK {major}: VMStructs has no _source_file_name_index"
    header = values.fields.get("HeapBlock::_header")
    length = values.fields.get("HeapBlock::Header::_length")
    used = values.fields.get("HeapBlock::Header::_used")
    flags = _either(values, "ConstMethod::_flags._flags", "ConstMethod::_flags")
    heaps = values.statics.get("CodeCache::_heaps")
    if None in (method, header, length, used, flags, heaps):
        return f"JDK {major}: VMStructs lacks nmethod, HeapBlock, ConstMethod flags or CodeCache::_heaps"
    assert method is not None and header is not None and length is not None and used is not None
    assert flags is not None and heaps is not None
    if found["blob_code_begin"] < 0 and found["blob_code_offset"] < 0:
        return f"JDK {major}: VMStructs has neither CodeBlob::_code_begin nor CodeBlob::_code_offset"
    if found["nmethod_immutable_data"] >= 0:
        pcs_end = values.fields.get("nmethod::_scopes_data_offset")
        mutable = (
            "blob_mutable_data",
            "blob_relocation_size",
            "blob_mutable_data_size",
            "nmethod_immutable_data_size",
        )
        if pcs_end is None or min(found[name] for name in mutable) < 0:
            return f"JDK {major}: nmethod immutable data without _scopes_data_offset or mutable data"
        found["nmethod_scopes_data_offset"] = pcs_end
    else:
        pcs_end = values.fields.get("nmethod::_dependencies_offset")
        if pcs_end is None or found["nmethod_scopes_data"] < 0 or found["nmethod_metadata_offset"] < 0:
            return f"JDK {major}: nmethod lacks _dependencies_offset, _scopes_data_begin or _metadata_offset"
        found["nmethod_scopes_data_offset"] = -1
    consts = values.constants
    linenumbers = consts.get("ConstMethodFlags::_misc_has_linenumber_table")
    linenumbers = consts.get("ConstMethod::_has_linenumber_table") if linenumbers is None else linenumbers
    if linenumbers is None:
        return f"JDK {major}: no has_linenumber_table flag constant"
    sender = values.constants.get("frame::interpreter_frame_sender_sp_offset")
    last = values.constants.get("frame::interpreter_frame_last_sp_offset")
    if (sender, last) != (FP_SENDER_SP, FP_LAST_SP):
        return f"JDK {major}: interpreter frame slots differ from x86-64's ({sender}, {last})"
    width_of = {"size_t": 8, "uint32_t": 4, "int": 4, "int16_t": 2, "u2": 2, "u4": 4}
    types = values.field_types
    flags_type = types.get("ConstMethod::_flags._flags", types.get("ConstMethod::_flags"))
    return HotSpotLayout(
        version=version,
        codecache_heaps=heaps,
        codecache_low_bound=values.statics.get("CodeCache::_low_bound", 0),
        codecache_high_bound=values.statics.get("CodeCache::_high_bound", 0),
        heapblock_length=header + length,
        heapblock_length_width=width_of.get(types.get("HeapBlock::Header::_length", ""), 8),
        heapblock_used=header + used,
        blob_frame_complete_width=width_of.get(types.get("CodeBlob::_frame_complete_offset", ""), 4),
        kind_nmethod=values.constants.get("CodeBlobKind::Nmethod", 0),
        kind_buffer=values.constants.get("CodeBlobKind::Buffer", 0),
        nmethod_method=method,
        growable_len=growable_len,
        nmethod_scopes_pcs_end=pcs_end,
        constmethod_flags=flags,
        constmethod_flags_width=width_of.get(flags_type or "", 2),
        constmethod_has_linenumber_table=linenumbers,
        unsigned5_excludes_zero=major >= 20,
        missing=tuple(missing),
        **found,
    )
