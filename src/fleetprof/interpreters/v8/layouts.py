"""V8 object and frame layouts (x86-64, no pointer compression, as Node.js builds V8) for the BPF frame step
and the namer.

Most offsets come from the binary's own postmortem metadata (`v8dbg_*` symbols, tools/gen-postmortem-
metadata.py in V8's tree): object fields, instance types, frame slots. What the metadata does not export
(where a Code object keeps its entry point and size or whether its instructions follow it inline, where an
instruction stream's header is, JSFunction's code slot, the BytecodeArray's position table, ScopeInfo's flag
bits) comes from one row per V8 minor version below; where a version's metadata does say, it wins and
tests/unit/test_v8_layouts.py checks that the row agrees. Rows were read from the objects of running nodes
(10.2: Node.js 18, 11.3: Node.js 20, 12.4: Node.js 22) and are checked against one each by
tests/bpf/test_node_stacks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tags (no pointer compression): heap object pointers end in 01, a Smi keeps its value in the upper half.
HEAP_OBJECT_TAG = 1
HEAP_OBJECT_TAG_MASK = 3
SMI_SHIFT = 32

# CodeKind (src/objects/code-kind.h) as 10.2 and 11.3 number it; 12.x dropped a kind before INTERPRETED, so a
# layout takes BASELINE from the metadata (CodeKindBaseline) and MAGLEV, TURBOFAN as the two after it.
CODE_KIND_INTERPRETED = 10
CODE_KIND_BASELINE = 11
CODE_KIND_MAGLEV = 12
CODE_KIND_TURBOFAN = 13

# String instance types: below FIRST_NONSTRING_TYPE; representation and encoding bits.
STRING_REPR_MASK = 7
STRING_SEQ = 0
STRING_CONS = 1
STRING_EXTERNAL = 2
STRING_SLICED = 3
STRING_THIN = 5
STRING_ONE_BYTE = 8
FIRST_NONSTRING_TYPE = 128

# Deoptimization data slots (DeoptimizationData::k*Index) for inlined functions, the same from 10.2 to 12.4
# (11.3 and 12.4 export them; a layout takes them from there).
DEOPT_LITERAL_ARRAY = 2
DEOPT_INLINING_POSITIONS = 7
# x64 register codes (V8's, the instruction encoding's) to DWARF register numbers.
_DWARF_OF_X64 = (0, 2, 1, 3, 7, 6, 4, 5, *range(8, 16))


@dataclass(frozen=True, slots=True)
class VersionRow:
    """What one V8 minor version keeps where its postmortem metadata does not say (where it does, it wins)."""

    code_entry: int  # Code: the instruction start (raw address); 0 with code_header
    code_header: int  # Code: its instructions follow it inline, this far from its start (10.x); 0: code_entry
    stream_header: int  # InstructionStream: its instructions start this far from it (map, then its Code)
    code_flags: int  # Code: int32 flags, CodeKind in the low bits
    code_size: int  # Code: int32 instruction size
    code_positions: int  # Code: source positions (optimized) or bytecode offsets (baseline)
    code_deopt_data: int  # Code: deoptimization data (optimized) or bytecode / interpreter data (baseline)
    code_kind_baseline: int  # CodeKind::BASELINE (MAGLEV, TURBOFAN follow)
    jsfunction_code: int  # JSFunction: its current Code; 0: none (13.x reaches it through a dispatch table)
    sfi_function_data: int  # SharedFunctionInfo: its BytecodeArray, baseline Code or InterpreterData
    bytecode_positions: int  # BytecodeArray: the source position table (ByteArray, or undefined: lazy)
    interpreter_data_bytecode: int  # InterpreterData: its BytecodeArray
    bytecode_offset_register: int  # the interpreter's bytecode offset register (DWARF number): live in a leaf
    scope_inferred_name_bit: int  # ScopeInfo flags: HasInferredFunctionNameBit
    scope_function_variable_shift: int  # ScopeInfo flags: FunctionVariableBits (2 bits)
    scope_receiver_shift: int  # ScopeInfo flags: ReceiverVariableBits (2 bits); -1: no receiver slot
    scope_saved_class_bit: int  # ScopeInfo flags: HasSavedClassVariableBit
    scope_max_inlined_locals: int  # ScopeInfo: more context locals than this keep their names in a table
    scope_flags_raw: bool = False  # ScopeInfo: flags a uint32 (13.x), not a Smi
    scope_positions_first: bool = False  # ScopeInfo: start and end right after the counts, always (13.x)


_ROWS: dict[tuple[int, int], VersionRow] = {
    (10, 2): VersionRow(  # Node.js 18: Code objects hold their instructions
        code_entry=0,
        code_header=128,
        stream_header=0,
        code_flags=48,
        code_size=40,
        code_positions=24,
        code_deopt_data=16,
        code_kind_baseline=11,
        jsfunction_code=48,
        sfi_function_data=8,
        bytecode_positions=32,
        interpreter_data_bytecode=8,
        bytecode_offset_register=9,  # r9 (kInterpreterBytecodeOffsetRegister on x64)
        scope_inferred_name_bit=14,
        scope_function_variable_shift=12,
        scope_receiver_shift=-1,  # no receiver info slot (a method using `this` keeps none)
        scope_saved_class_bit=10,
        scope_max_inlined_locals=75,
    ),
    (11, 3): VersionRow(  # Node.js 20: Code (the former CodeDataContainer) points at an InstructionStream
        code_entry=40,
        code_header=0,
        stream_header=16,
        code_flags=48,
        code_size=56,
        code_positions=24,
        code_deopt_data=16,
        code_kind_baseline=11,
        jsfunction_code=48,
        sfi_function_data=8,
        bytecode_positions=32,
        interpreter_data_bytecode=8,
        bytecode_offset_register=9,
        scope_inferred_name_bit=14,
        scope_function_variable_shift=12,
        scope_receiver_shift=-1,  # 11.3 keeps no receiver info slot
        scope_saved_class_bit=10,
        scope_max_inlined_locals=75,
    ),
    (12, 4): VersionRow(  # Node.js 22: Code and BytecodeArray in trusted space (plain pointers: no sandbox)
        code_entry=40,
        code_header=0,
        stream_header=32,  # map, Code, relocation info, body size
        code_flags=48,
        code_size=52,
        code_positions=16,
        code_deopt_data=8,
        code_kind_baseline=10,
        jsfunction_code=24,
        sfi_function_data=8,
        bytecode_positions=24,  # after its length and wrapper
        interpreter_data_bytecode=8,
        bytecode_offset_register=9,
        scope_inferred_name_bit=14,
        scope_function_variable_shift=12,
        scope_receiver_shift=-1,
        scope_saved_class_bit=10,
        scope_max_inlined_locals=75,
    ),
    (
        13,
        6,
    ): VersionRow(  # Node.js 24: JSFunctions call through the dispatch table (leaptiering), no code slot
        code_entry=40,
        code_header=0,
        stream_header=32,
        code_flags=52,  # after the dispatch handle
        code_size=56,
        code_positions=16,
        code_deopt_data=8,
        code_kind_baseline=10,
        jsfunction_code=0,
        sfi_function_data=8,
        bytecode_positions=24,
        interpreter_data_bytecode=8,
        bytecode_offset_register=9,
        scope_inferred_name_bit=14,
        scope_function_variable_shift=12,
        scope_receiver_shift=-1,
        scope_saved_class_bit=10,
        scope_max_inlined_locals=75,
        scope_flags_raw=True,
        scope_positions_first=True,
    ),
}


@dataclass(frozen=True, slots=True)
class V8Layout:
    """Every offset the walk and the namer read; object offsets are from the untagged object start."""

    version: tuple[int, int, int]
    map_instance_type: int
    jsfunction_shared: int
    jsfunction_code: int
    jsfunction_first_type: int
    jsfunction_end_type: int  # exclusive: JSFunction and its constructor subtypes
    sfi_function_data: int
    sfi_name_or_scope_info: int
    sfi_script_or_debug_info: int
    script_source: int
    script_name: int
    script_line_ends: int
    code_entry: int
    code_header: int  # instructions inline at this offset of the Code (10.x), 0: read code_entry
    stream_header: int  # an instruction stream's header size (map, Code), 0: no streams (code_header)
    code_flags: int
    code_size: int
    code_kind_mask: int
    code_kind_baseline: int
    code_kind_maglev: int
    code_kind_turbofan: int
    code_positions: int  # source positions (optimized) or bytecode offsets (baseline)
    code_deopt_data: int  # deoptimization data (optimized) or bytecode (baseline)
    deopt_literal_array: int  # DeoptimizationData slots
    deopt_inlining_positions: int
    bytecode_header: int  # BytecodeArray: where the bytecodes start
    bytecode_positions: int
    bytecode_offset_register: int  # DWARF number
    interpreter_data_bytecode: int
    fixed_array_length: int
    fixed_array_data: int
    string_length: int
    seq_string_chars: int
    cons_first: int
    cons_second: int
    thin_actual: int
    sliced_parent: int
    sliced_offset: int
    fp_marker: int  # frame slots, from the frame pointer
    fp_function: int
    fp_bytecode_array: int
    fp_bytecode_offset: int
    type_bytecode_array: int
    type_byte_array: int
    type_trusted_byte_array: int  # 12.x keeps code's tables in trusted space; type_byte_array before
    type_scope_info: int
    type_script: int
    type_shared_function_info: int
    type_interpreter_data: int
    type_fixed_array: int
    type_code: int
    type_sfi_wrapper: int  # SharedFunctionInfoWrapper (13.x: deoptimization literals hold SFIs in one), -1
    scope_variable_part: int  # ScopeInfo: where the context locals' names start
    scope: VersionRow


# Layout field -> the `v8dbg_` names (without the prefix) that may give it, newest spelling last: 12.x types
# its fields Tagged<T>, and some fields were renamed.
_REQUIRED: dict[str, tuple[str, ...]] = {
    "map_instance_type": ("class_Map__instance_type__uint16_t",),
    "jsfunction_shared": (
        "class_JSFunction__shared__SharedFunctionInfo",
        "class_JSFunction__shared__Tagged_SharedFunctionInfo_",
    ),
    "jsfunction_first_type": ("type_JSFunction__JS_FUNCTION_TYPE",),
    "sfi_name_or_scope_info": (
        "class_SharedFunctionInfo__name_or_scope_info__Object",
        "class_SharedFunctionInfo__name_or_scope_info__Tagged_Object_",
        "class_SharedFunctionInfo__name_or_scope_info__Tagged_NameOrScopeInfoT_",
    ),
    "sfi_script_or_debug_info": (
        "class_SharedFunctionInfo__script_or_debug_info__HeapObject",
        "class_SharedFunctionInfo__script__Tagged_HeapObject_",
        "class_SharedFunctionInfo__raw_script__Tagged_Object_",
    ),
    "script_source": ("class_Script__source__Object", "class_Script__source__Tagged_Object_"),
    "script_name": ("class_Script__name__Object", "class_Script__name__Tagged_Object_"),
    "script_line_ends": ("class_Script__line_ends__Object", "class_Script__line_ends__Tagged_Object_"),
    "bytecode_header": ("class_BytecodeArray__data__uintptr_t",),
    "fixed_array_length": ("class_FixedArrayBase__length__SMI", "class_FixedArrayBase__length__Tagged_Smi_"),
    "fixed_array_data": ("class_FixedArray__data__uintptr_t",),
    "string_length": ("class_String__length__int32_t",),
    "seq_string_chars": ("class_SeqOneByteString__chars__char",),
    "cons_first": ("class_ConsString__first__String", "class_ConsString__first__Tagged_String_"),
    "cons_second": ("class_ConsString__second__String", "class_ConsString__second__Tagged_String_"),
    "thin_actual": ("class_ThinString__actual__String", "class_ThinString__actual__Tagged_String_"),
    "sliced_parent": ("class_SlicedString__parent__String", "class_SlicedString__parent__Tagged_String_"),
    "sliced_offset": ("class_SlicedString__offset__SMI", "class_SlicedString__offset__Tagged_Smi_"),
    "fp_marker": ("off_fp_context_or_frame_type",),
    "fp_function": ("off_fp_function",),
    "fp_bytecode_array": ("off_fp_bytecode_array",),
    "fp_bytecode_offset": ("off_fp_bytecode_offset",),
    "type_bytecode_array": ("type_BytecodeArray__BYTECODE_ARRAY_TYPE",),
    "type_byte_array": ("type_ByteArray__BYTE_ARRAY_TYPE",),
    "type_scope_info": ("type_ScopeInfo__SCOPE_INFO_TYPE",),
    "type_script": ("type_Script__SCRIPT_TYPE",),
    "type_shared_function_info": ("type_SharedFunctionInfo__SHARED_FUNCTION_INFO_TYPE",),
    "type_interpreter_data": ("type_InterpreterData__INTERPRETER_DATA_TYPE",),
    "type_fixed_array": ("type_FixedArray__FIXED_ARRAY_TYPE",),
    "type_code": ("type_Code__CODE_TYPE",),
}

# Row field -> the `v8dbg_` names that give it in the versions that export it (they win over the row).
ROW_METADATA: dict[str, tuple[str, ...]] = {
    "jsfunction_code": (
        "class_JSFunction__code__Code",
        "class_JSFunction__code__CodeT",
        "class_JSFunction__code__Tagged_Code_",
    ),
    "sfi_function_data": ("class_SharedFunctionInfo__function_data__Object",),
    "code_entry": ("class_Code__instruction_start__Address",),
    "code_header": ("class_Code__instruction_start__uintptr_t",),  # 10.x: the header, instructions inline
    "stream_header": ("class_InstructionStream__instruction_start__uintptr_t",),
    "code_flags": ("class_Code__flags__uint32_t",),
    "code_size": ("class_Code__instruction_size__int",),
    "code_positions": ("class_Code__source_position_table__ByteArray",),
    "code_deopt_data": ("class_Code__deoptimization_data__FixedArray",),
    "code_kind_baseline": ("CodeKindBaseline",),
}


def _first(consts: dict[str, int], names: tuple[str, ...]) -> int | None:
    return next((consts[name] for name in names if name in consts), None)


def row_value(consts: dict[str, int], row: VersionRow, field: str) -> int:
    """A row field as the binary's metadata gives it, else as the row does."""
    found = _first(consts, ROW_METADATA.get(field, ()))
    return getattr(row, field) if found is None else found


def supported_text() -> str:
    """The versions with a row, for `[unwind: v8: …]`."""
    return ", ".join(f"{major}.{minor}" for major, minor in sorted(_ROWS))


def version_row(version: tuple[int, ...]) -> VersionRow | None:
    """The row of a V8 major.minor, None when there is none."""
    return _ROWS.get((version[0], version[1]))


def layout_from(consts: dict[str, int], version: tuple[int, int, int]) -> V8Layout | str:
    """The layout of a V8 from its `v8dbg_*` constants (names without the prefix), or why there is none."""
    row = version_row(version)
    name = f"V8 {version[0]}.{version[1]}"
    if row is None:
        return f"{name} has no object layout (covered: {supported_text()})"
    if consts.get("SystemPointerSize", 8) != 8 or consts.get("TaggedSize", 8) != 8:
        return f"{name} uses pointer compression (not supported)"
    fields: dict[str, int] = {}
    for field, names in _REQUIRED.items():
        found = _first(consts, names)
        if found is None:
            return f"{name}: postmortem metadata lacks v8dbg_{names[0]}"
        fields[field] = found
    from_row = {field: row_value(consts, row, field) for field in ROW_METADATA}
    if from_row["code_header"]:
        from_row["code_entry"] = 0
    first = fields["jsfunction_first_type"]
    last = consts.get("LastJSFunctionType")
    later = [value for key, value in consts.items() if key.startswith("type_") and value > first]
    register = consts.get("InterpreterBytecodeOffsetRegister")
    baseline = from_row.pop("code_kind_baseline")
    return V8Layout(
        version=version,
        jsfunction_end_type=last + 1 if last is not None else min(later, default=first + 1),
        code_kind_mask=consts.get("CodeKindFieldMask", 15),
        code_kind_baseline=baseline,
        code_kind_maglev=baseline + 1,
        code_kind_turbofan=baseline + 2,
        deopt_literal_array=consts.get("DeoptimizationDataLiteralArrayIndex", DEOPT_LITERAL_ARRAY),
        deopt_inlining_positions=consts.get(
            "DeoptimizationDataInliningPositionsIndex", DEOPT_INLINING_POSITIONS
        ),
        bytecode_positions=row.bytecode_positions,
        bytecode_offset_register=(
            _DWARF_OF_X64[register]
            if register is not None and 0 <= register < 16
            else row.bytecode_offset_register
        ),
        interpreter_data_bytecode=row.interpreter_data_bytecode,
        type_sfi_wrapper=consts.get("type_SharedFunctionInfoWrapper__SHARED_FUNCTION_INFO_WRAPPER_TYPE", -1),
        scope_variable_part=8
        + 8 * consts.get("scopeinfo_idx_first_vars", 5 if row.scope_positions_first else 3),
        type_trusted_byte_array=consts.get(
            "type_TrustedByteArray__TRUSTED_BYTE_ARRAY_TYPE", fields["type_byte_array"]
        ),
        scope=row,
        **from_row,
        **fields,
    )
