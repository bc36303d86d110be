"""V8 object and frame layouts (x86-64, no pointer compression, as Node.js builds V8) for the BPF frame step
and the namer.

Most offsets come from the binary's own postmortem metadata (`v8dbg_*` symbols, tools/gen-postmortem-
metadata.py in V8's tree): object fields, instance types, frame slots. A few the metadata does not export
(where a Code object keeps its entry point and size, JSFunction's code slot, the BytecodeArray's position
table, ScopeInfo's flag bits) come from one row per V8 minor version below; the 11.3 row (Node.js 20) was
read from the objects of a running node and is checked against one by tests/bpf/test_node_stacks.py.
"""

from __future__ import annotations

from dataclasses import dataclass

# Tags (no pointer compression): heap object pointers end in 01, a Smi keeps its value in the upper half.
HEAP_OBJECT_TAG = 1
HEAP_OBJECT_TAG_MASK = 3
SMI_SHIFT = 32

# CodeKind (src/objects/code-kind.h), stable from V8 9.x to 11.x.
CODE_KIND_BYTECODE_HANDLER = 0
CODE_KIND_BUILTIN = 2
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

# Deoptimization data slots (DeoptimizationData::k*Index) for inlined functions.
DEOPT_LITERAL_ARRAY = 2
DEOPT_INLINING_POSITIONS = 7


@dataclass(frozen=True, slots=True)
class VersionRow:
    """What one V8 minor version keeps where the postmortem metadata does not say."""

    code_entry: int  # Code: the instruction start (raw address)
    code_flags: int  # Code: int32 flags, CodeKind in the low bits
    code_size: int  # Code: int32 instruction size
    jsfunction_code: int  # JSFunction: its current Code
    bytecode_positions: int  # BytecodeArray: the source position table (ByteArray, or undefined: lazy)
    interpreter_data_bytecode: int  # InterpreterData: its BytecodeArray
    bytecode_offset_register: int  # the interpreter's bytecode offset register (DWARF number): live in a leaf
    scope_inferred_name_bit: int  # ScopeInfo flags: HasInferredFunctionNameBit
    scope_function_variable_shift: int  # ScopeInfo flags: FunctionVariableBits (2 bits)
    scope_receiver_shift: int  # ScopeInfo flags: ReceiverVariableBits (2 bits); -1: no receiver slot
    scope_saved_class_bit: int  # ScopeInfo flags: HasSavedClassVariableBit
    scope_outer_bit: int  # ScopeInfo flags: HasOuterScopeInfoBit
    scope_max_inlined_locals: int  # ScopeInfo: more context locals than this keep their names in a table


_ROWS: dict[tuple[int, int], VersionRow] = {
    (11, 3): VersionRow(
        code_entry=40,
        code_flags=48,
        code_size=56,
        jsfunction_code=48,
        bytecode_positions=32,
        interpreter_data_bytecode=8,
        bytecode_offset_register=9,  # r9 (kInterpreterBytecodeOffsetRegister on x64)
        scope_inferred_name_bit=14,
        scope_function_variable_shift=12,
        scope_receiver_shift=-1,  # 11.3 keeps no receiver info slot
        scope_saved_class_bit=10,
        scope_outer_bit=20,
        scope_max_inlined_locals=75,
    ),
}


def supported_text() -> str:
    """The versions with a row, for `[unwind: v8: …]`."""
    return ", ".join(f"{major}.{minor}" for major, minor in sorted(_ROWS))


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
    code_flags: int
    code_size: int
    code_kind_mask: int
    code_positions: int  # source positions (optimized) or bytecode offsets (baseline)
    code_deopt_data: int  # deoptimization data (optimized) or bytecode (baseline)
    bytecode_header: int  # BytecodeArray: where the bytecodes start
    bytecode_positions: int
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
    type_scope_info: int
    type_script: int
    type_shared_function_info: int
    type_interpreter_data: int
    type_fixed_array: int
    type_code: int
    scope: VersionRow


_REQUIRED = {
    "map_instance_type": "class_Map__instance_type__uint16_t",
    "jsfunction_shared": "class_JSFunction__shared__SharedFunctionInfo",
    "jsfunction_first_type": "type_JSFunction__JS_FUNCTION_TYPE",
    "sfi_function_data": "class_SharedFunctionInfo__function_data__Object",
    "sfi_name_or_scope_info": "class_SharedFunctionInfo__name_or_scope_info__Object",
    "sfi_script_or_debug_info": "class_SharedFunctionInfo__script_or_debug_info__HeapObject",
    "script_source": "class_Script__source__Object",
    "script_name": "class_Script__name__Object",
    "script_line_ends": "class_Script__line_ends__Object",
    "code_positions": "class_Code__source_position_table__ByteArray",
    "code_deopt_data": "class_Code__deoptimization_data__FixedArray",
    "bytecode_header": "class_BytecodeArray__data__uintptr_t",
    "fixed_array_length": "class_FixedArrayBase__length__SMI",
    "fixed_array_data": "class_FixedArray__data__uintptr_t",
    "string_length": "class_String__length__int32_t",
    "seq_string_chars": "class_SeqOneByteString__chars__char",
    "cons_first": "class_ConsString__first__String",
    "cons_second": "class_ConsString__second__String",
    "thin_actual": "class_ThinString__actual__String",
    "sliced_parent": "class_SlicedString__parent__String",
    "sliced_offset": "class_SlicedString__offset__SMI",
    "fp_marker": "off_fp_context_or_frame_type",
    "fp_function": "off_fp_function",
    "fp_bytecode_array": "off_fp_bytecode_array",
    "fp_bytecode_offset": "off_fp_bytecode_offset",
    "type_bytecode_array": "type_BytecodeArray__BYTECODE_ARRAY_TYPE",
    "type_byte_array": "type_ByteArray__BYTE_ARRAY_TYPE",
    "type_scope_info": "type_ScopeInfo__SCOPE_INFO_TYPE",
    "type_script": "type_Script__SCRIPT_TYPE",
    "type_shared_function_info": "type_SharedFunctionInfo__SHARED_FUNCTION_INFO_TYPE",
    "type_interpreter_data": "type_InterpreterData__INTERPRETER_DATA_TYPE",
    "type_fixed_array": "type_FixedArray__FIXED_ARRAY_TYPE",
    "type_code": "type_Code__CODE_TYPE",
}


def layout_from(consts: dict[str, int], version: tuple[int, int, int]) -> V8Layout | str:
    """The layout of a V8 from its `v8dbg_*` constants (names without the prefix), or why there is none."""
    row = _ROWS.get(version[:2])
    name = f"V8 {version[0]}.{version[1]}"
    if row is None:
        return f"{name} has no object layout (covered: {supported_text()})"
    if consts.get("SystemPointerSize", 8) != 8 or consts.get("TaggedSize", 8) != 8:
        return f"{name} uses pointer compression (not supported)"
    missing = [symbol for symbol in _REQUIRED.values() if symbol not in consts]
    if missing:
        return f"{name}: postmortem metadata lacks v8dbg_{missing[0]}"
    fields = {field: consts[symbol] for field, symbol in _REQUIRED.items()}
    first = fields["jsfunction_first_type"]
    later = [value for key, value in consts.items() if key.startswith("type_") and value > first]
    return V8Layout(
        version=version,
        jsfunction_code=consts.get("class_JSFunction__code__Code", row.jsfunction_code),
        jsfunction_end_type=min(later, default=first + 1),
        code_entry=row.code_entry,
        code_flags=row.code_flags,
        code_size=row.code_size,
        code_kind_mask=consts.get("CodeKindFieldMask", 15),
        bytecode_positions=row.bytecode_positions,
        interpreter_data_bytecode=row.interpreter_data_bytecode,
        scope=row,
        **fields,
    )
