"""The per-version rows: each V8 a node ships (10.2: Node.js 18, 11.3: 20, 12.4: 22, 13.6: 24) gets a layout
from its own metadata with the row filling the rest; where the metadata says what a row says, they agree
(checked on every node installed here); 12.x's renamed fields, 10.x's inline code and 13.x's missing code
slot and new ScopeInfo are read right."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_v8_procinfo import CONSTS

from fleetprof.elf.view import ElfView
from fleetprof.interpreters.v8 import procinfo
from fleetprof.interpreters.v8.discovery import V8Binary, inspect_v8_binary, postmortem_constants
from fleetprof.interpreters.v8.layouts import ROW_METADATA, V8Layout, layout_from, version_row

NPM_NODES = Path(__file__).resolve().parents[2] / "tools" / "npm" / "node_modules"
NODES = [Path(p) for p in (shutil.which("node"),) if p] + sorted(NPM_NODES.glob("node[0-9]*/bin/node"))

# What node 18's metadata says where it differs from node 20's (CONSTS): no deoptimization or Code table
# fields, Code's flags and size, JSFunction's code (a CodeT), the instructions' offset in a Code.
NODE18 = {
    **{k: v for k, v in CONSTS.items() if not k.startswith("class_Code__")},
    "class_BytecodeArray__data__uintptr_t": 56,
    "class_JSFunction__code__CodeT": 48,
    "class_Code__instruction_start__uintptr_t": 128,
    "class_Code__instruction_size__int": 40,
    "class_Code__flags__uint32_t": 48,
    "type_JSFunction__JS_FUNCTION_TYPE": 2065,
    "type_Code__CODE_TYPE": 240,
    "CodeKindBaseline": 11,
}
# Node 22's: fields typed Tagged<T>, SharedFunctionInfo's script renamed and its function data unexported,
# Code in trusted space with its tables as TrustedByteArrays, JSFunction's range named.
_RENAMED = {
    "class_SharedFunctionInfo__name_or_scope_info__Object",
    "class_SharedFunctionInfo__script_or_debug_info__HeapObject",
    "class_SharedFunctionInfo__function_data__Object",
    "class_JSFunction__shared__SharedFunctionInfo",
}
NODE22 = {
    **{k: v for k, v in CONSTS.items() if not k.startswith("class_Code__") and k not in _RENAMED},
    "class_SharedFunctionInfo__name_or_scope_info__Tagged_Object_": 16,
    "class_SharedFunctionInfo__script__Tagged_HeapObject_": 32,
    "class_JSFunction__shared__Tagged_SharedFunctionInfo_": 32,
    "class_JSFunction__code__Tagged_Code_": 24,
    "class_BytecodeArray__data__uintptr_t": 64,
    "class_Code__instruction_start__Address": 40,
    "class_Code__instruction_size__int": 52,
    "class_Code__flags__uint32_t": 48,
    "class_InstructionStream__instruction_start__uintptr_t": 32,
    "type_Code__CODE_TYPE": 206,
    "type_TrustedByteArray__TRUSTED_BYTE_ARRAY_TYPE": 212,
    "FirstJSFunctionType": 2066,
    "LastJSFunctionType": 2082,
    "CodeKindBaseline": 10,
    "InterpreterBytecodeOffsetRegister": 9,
}


def _layout(consts: dict[str, int], version: tuple[int, int, int]) -> V8Layout:
    layout = layout_from(consts, version)
    assert isinstance(layout, V8Layout), layout
    return layout


def test_node18_code_holds_its_instructions() -> None:
    """V8 10.2: a JSFunction's Code has its instructions inline, 128 bytes in; no instruction streams."""
    lay = _layout(NODE18, (10, 2, 154))
    assert (lay.code_header, lay.code_entry, lay.stream_header) == (128, 0, 0)
    assert (lay.code_size, lay.code_flags, lay.code_positions, lay.code_deopt_data) == (40, 48, 24, 16)
    assert (lay.jsfunction_code, lay.bytecode_header, lay.bytecode_positions) == (48, 56, 32)
    assert (lay.code_kind_baseline, lay.code_kind_maglev, lay.code_kind_turbofan) == (11, 12, 13)
    assert (lay.deopt_literal_array, lay.deopt_inlining_positions) == (2, 7)  # not exported: the defaults
    assert lay.type_trusted_byte_array == lay.type_byte_array
    binary = V8Binary("/n18", "0" * 32, (10, 2, 154), lay, (1, 2), b"")
    assert procinfo.v8_proc_info(binary).code_header == 128


def test_node22_renamed_fields_and_trusted_code() -> None:
    """V8 12.4: Tagged<T> field names, Code's tables one slot lower, a 32-byte instruction stream header,
    CodeKind one lower, JSFunction's range from the metadata."""
    lay = _layout(NODE22, (12, 4, 254))
    assert (lay.jsfunction_shared, lay.jsfunction_code, lay.sfi_name_or_scope_info) == (32, 24, 16)
    assert (lay.sfi_function_data, lay.sfi_script_or_debug_info) == (8, 32)
    assert (lay.code_entry, lay.code_header, lay.stream_header, lay.code_size) == (40, 0, 32, 52)
    assert (lay.code_positions, lay.code_deopt_data, lay.bytecode_positions) == (16, 8, 24)
    assert (lay.code_kind_baseline, lay.code_kind_turbofan) == (10, 12)
    assert (lay.jsfunction_first_type, lay.jsfunction_end_type) == (2066, 2083)
    assert (lay.type_trusted_byte_array, lay.bytecode_offset_register) == (212, 9)
    info = procinfo.v8_proc_info(V8Binary("/n22", "0" * 32, (12, 4, 254), lay, (1, 2), b""))
    assert (info.jsfunction_shared, info.jsfunction_code, info.code_size, info.code_header) == (32, 24, 52, 0)


def test_offset_register_is_a_dwarf_number() -> None:
    """V8 names registers by their x64 codes; BPF reads live registers by DWARF number (rsi: 6 -> 4)."""
    assert (
        _layout(dict(NODE22, InterpreterBytecodeOffsetRegister=6), (12, 4, 0)).bytecode_offset_register == 4
    )


def test_metadata_wins_over_the_row() -> None:
    lay = _layout(dict(NODE22, **{"class_Code__instruction_size__int": 60}), (12, 4, 0))
    assert lay.code_size == 60


@pytest.mark.parametrize("node", NODES, ids=[str(n) for n in NODES])
def test_rows_agree_with_each_installed_nodes_metadata(node: Path) -> None:
    """Every node here is covered, and where its metadata exports what its row says, the two agree."""
    found = inspect_v8_binary(node.resolve())
    assert isinstance(found, V8Binary), found
    row = version_row(found.version)
    assert row is not None
    consts = postmortem_constants(ElfView(str(node.resolve())))
    checked = 0
    for field, names in ROW_METADATA.items():
        for name in names:
            if name in consts:
                assert consts[name] == getattr(row, field), (found.version, field, name)
                checked += 1
    assert checked >= 2, found.version
    if "InterpreterBytecodeOffsetRegister" in consts:
        assert found.layout.bytecode_offset_register == row.bytecode_offset_register


# Node 24's: no JSFunction code slot (leaptiering), the name-or-ScopeInfo field retyped, SharedFunctionInfo's
# script one slot later, Code's flags after its dispatch handle, deoptimization literals one slot later.
NODE24 = {
    **{k: v for k, v in NODE22.items() if not k.startswith("class_JSFunction__code")},
    "class_SharedFunctionInfo__name_or_scope_info__Tagged_NameOrScopeInfoT_": 24,
    "class_SharedFunctionInfo__script__Tagged_HeapObject_": 40,
    "class_Code__flags__uint32_t": 52,
    "class_Code__instruction_size__int": 56,
    "DeoptimizationDataLiteralArrayIndex": 3,
    "DeoptimizationDataInliningPositionsIndex": 8,
    "type_SharedFunctionInfoWrapper__SHARED_FUNCTION_INFO_WRAPPER_TYPE": 195,
    "scopeinfo_idx_first_vars": 5,
}
del NODE24["class_SharedFunctionInfo__name_or_scope_info__Tagged_Object_"]


def test_node24_has_no_code_slot_and_a_new_scope_info() -> None:
    """V8 13.6: BPF gets no JSFunction code slot (0), Code's flags and size move, the deoptimization data's
    indices come from the metadata, and ScopeInfo keeps raw flags with its positions before the locals."""
    lay = _layout(NODE24, (13, 6, 233))
    assert (lay.jsfunction_code, lay.sfi_name_or_scope_info, lay.sfi_script_or_debug_info) == (0, 24, 40)
    assert (lay.code_flags, lay.code_size, lay.code_entry, lay.stream_header) == (52, 56, 40, 32)
    assert (lay.deopt_literal_array, lay.deopt_inlining_positions, lay.type_sfi_wrapper) == (3, 8, 195)
    assert lay.scope_variable_part == 48 and lay.scope.scope_flags_raw and lay.scope.scope_positions_first
    info = procinfo.v8_proc_info(V8Binary("/n24", "0" * 32, (13, 6, 233), lay, (1, 2), b""))
    assert (info.jsfunction_code, info.code_flags) == (0, 52)
