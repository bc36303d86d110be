"""v8_offsets.h and its mirror interpreters/v8/procinfo.py agree byte for byte; the info is filled from the
layout; the layout comes from the postmortem metadata, and a V8 without a row or without the metadata it
needs is refused with the reason."""

from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import pytest
from cprobe import run_c, struct_layout

from fleetprof.interpreters.v8 import procinfo, symbolizer
from fleetprof.interpreters.v8.discovery import V8Binary, inspect_v8_binary
from fleetprof.interpreters.v8.layouts import V8Layout, layout_from

HEADER = Path(procinfo.__file__).with_name("v8_offsets.h")
NODE = shutil.which("node")
# What node 20's own metadata says (v8dbg_*, names without the prefix): enough for a layout.
CONSTS = {
    "class_Map__instance_type__uint16_t": 12,
    "class_JSFunction__shared__SharedFunctionInfo": 24,
    "type_JSFunction__JS_FUNCTION_TYPE": 2066,
    "type_JSAtomicsCondition__JS_ATOMICS_CONDITION_TYPE": 2097,
    "type_JSBoundFunction__JS_BOUND_FUNCTION_TYPE": 2064,
    "class_SharedFunctionInfo__function_data__Object": 8,
    "class_SharedFunctionInfo__name_or_scope_info__Object": 16,
    "class_SharedFunctionInfo__script_or_debug_info__HeapObject": 32,
    "class_Script__source__Object": 8,
    "class_Script__name__Object": 16,
    "class_Script__line_ends__Object": 56,
    "class_Code__source_position_table__ByteArray": 24,
    "class_Code__deoptimization_data__FixedArray": 16,
    "class_BytecodeArray__data__uintptr_t": 54,
    "class_FixedArrayBase__length__SMI": 8,
    "class_FixedArray__data__uintptr_t": 16,
    "class_String__length__int32_t": 12,
    "class_SeqOneByteString__chars__char": 16,
    "class_ConsString__first__String": 16,
    "class_ConsString__second__String": 24,
    "class_ThinString__actual__String": 16,
    "class_SlicedString__parent__String": 16,
    "class_SlicedString__offset__SMI": 24,
    "off_fp_context_or_frame_type": -8,
    "off_fp_function": -16,
    "off_fp_bytecode_array": -32,
    "off_fp_bytecode_offset": -40,
    "type_BytecodeArray__BYTECODE_ARRAY_TYPE": 191,
    "type_ByteArray__BYTE_ARRAY_TYPE": 190,
    "type_ScopeInfo__SCOPE_INFO_TYPE": 261,
    "type_Script__SCRIPT_TYPE": 167,
    "type_SharedFunctionInfo__SHARED_FUNCTION_INFO_TYPE": 262,
    "type_InterpreterData__INTERPRETER_DATA_TYPE": 159,
    "type_FixedArray__FIXED_ARRAY_TYPE": 175,
    "type_Code__CODE_TYPE": 245,
}


def node20_layout() -> V8Layout:
    """The layout node 20 (V8 11.3) gets from CONSTS."""
    layout = layout_from(CONSTS, (11, 3, 244))
    assert isinstance(layout, V8Layout), layout
    return layout


def test_struct_matches_c(tmp_path: Path) -> None:
    cls = procinfo.V8ProcInfo
    got = struct_layout(tmp_path, HEADER, "v8_proc_info", [f[0] for f in cls._fields_])
    assert got == [ctypes.sizeof(cls), *(getattr(cls, f[0]).offset for f in cls._fields_)]


def test_constants_match_c_and_the_namer(tmp_path: Path) -> None:
    names = [n for n in dir(procinfo) if n.startswith("V8_")]
    got = [int(v) for v in run_c(tmp_path, HEADER, [f'printf("%lld\\n", (long long){n});' for n in names])]
    assert got == [getattr(procinfo, n) for n in names]
    for name in (
        "V8_FRAME_INTERPRETED",
        "V8_FRAME_CODE",
        "V8_FRAME_FUNCTION",
        "V8_FRAME_JIT_INTERPRETED",
        "V8_AUX_KIND_MASK",
        "V8_AUX_SHIFT",
    ):
        assert getattr(symbolizer, name) == getattr(procinfo, name), name


def test_layout_from_metadata_and_the_version_row() -> None:
    layout = node20_layout()
    assert (layout.fp_function, layout.fp_bytecode_offset, layout.jsfunction_shared) == (-16, -40, 24)
    # JSFunction and its constructor subtypes: up to the next instance type the metadata names
    assert (layout.jsfunction_first_type, layout.jsfunction_end_type) == (2066, 2097)
    assert (layout.code_entry, layout.code_size, layout.jsfunction_code) == (40, 56, 48)  # the 11.3 row


def test_unknown_versions_and_missing_metadata_say_why() -> None:
    assert layout_from(CONSTS, (14, 1, 0)) == "V8 14.1 has no object layout (covered: 10.2, 11.3, 12.4, 13.6)"
    partial = {k: v for k, v in CONSTS.items() if k != "off_fp_function"}
    assert layout_from(partial, (11, 3, 0)) == "V8 11.3: postmortem metadata lacks v8dbg_off_fp_function"
    compressed = dict(CONSTS, TaggedSize=4)
    assert layout_from(compressed, (11, 3, 0)) == "V8 11.3 uses pointer compression (not supported)"


def test_info_is_filled_from_the_layout() -> None:
    binary = V8Binary(
        path="/usr/bin/node",
        file_id="0" * 32,
        version=(11, 3, 244),
        layout=node20_layout(),
        builtins=(0x18C4000, 0x1A55AB8),
        bytecode_sizes=b"",
    )
    info = procinfo.v8_proc_info(binary)
    assert (info.fp_marker, info.fp_function, info.fp_bytecode_array, info.fp_bytecode_offset) == (
        -8,
        -16,
        -32,
        -40,
    )
    assert (info.code_entry, info.code_size, info.bytecode_header, info.bytecode_array_type) == (
        40,
        56,
        54,
        191,
    )
    assert info.offset_register == 9  # r9
    assert info.version == 11 << 8 | 3


@pytest.mark.skipif(NODE is None, reason="node is not installed (make setup installs it)")
def test_installed_node_is_described() -> None:
    """The node on this machine: its V8 version, a layout from its own metadata, the builtins' range holding
    the interpreter's entry trampoline, and the bytecode sizes table."""
    assert NODE is not None
    found = inspect_v8_binary(Path(NODE).resolve())
    if not isinstance(found, V8Binary):
        pytest.skip(f"this node's V8 is not covered: {found}")
    start, end = found.builtins
    assert 0 < start < end and end - start > 1 << 20
    assert len(found.bytecode_sizes) % 3 == 0 and len(found.bytecode_sizes) >= 3 * 100
    assert found.layout.fp_function == -16


def test_a_file_without_v8_is_not_one(tmp_path: Path) -> None:
    assert inspect_v8_binary("/bin/true") is None
    bogus = tmp_path / "node"
    bogus.write_bytes(b"not an ELF file")
    assert inspect_v8_binary(bogus) is None
