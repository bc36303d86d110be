"""Python mirror of v8_offsets.h: the per-process struct the BPF V8 step reads.

Field names and constants are identical to the C header; tests/unit/test_v8_procinfo.py compiles the header
and compares.
"""

from __future__ import annotations

import ctypes

from fleetprof.interpreters.v8.discovery import V8Binary

V8_FRAME_INTERPRETED = 1
V8_FRAME_CODE = 2
V8_FRAME_FUNCTION = 3
V8_FRAME_JIT_INTERPRETED = 4
V8_AUX_KIND_MASK = 15
V8_AUX_SHIFT = 4
V8_HEAP_OBJECT_TAG = 1
V8_HEAP_OBJECT_TAG_MASK = 3
V8_SMI_SHIFT = 32
V8_CODE_KIND_MASK = 15
V8_CODE_KIND_BUILTIN = 2


class V8ProcInfo(ctypes.Structure):
    """`struct v8_proc_info`: the frame slots and object offsets one process's V8 frames are read with."""

    _fields_ = (
        ("fp_marker", ctypes.c_int8),
        ("fp_function", ctypes.c_int8),
        ("fp_bytecode_array", ctypes.c_int8),
        ("fp_bytecode_offset", ctypes.c_int8),
        ("map_instance_type", ctypes.c_uint8),
        ("jsfunction_shared", ctypes.c_uint8),
        ("jsfunction_code", ctypes.c_uint8),
        ("code_entry", ctypes.c_uint8),
        ("code_size", ctypes.c_uint8),
        ("bytecode_header", ctypes.c_uint8),
        ("offset_register", ctypes.c_uint8),
        ("code_header", ctypes.c_uint8),
        ("jsfunction_first_type", ctypes.c_uint16),
        ("jsfunction_end_type", ctypes.c_uint16),
        ("bytecode_array_type", ctypes.c_uint16),
        ("version", ctypes.c_uint16),
        ("code_flags", ctypes.c_uint8),
        ("reserved", ctypes.c_uint8 * 3),
        ("trampoline_offset", ctypes.c_uint32),
        ("builtins_size", ctypes.c_uint32),
    )


def v8_proc_info(binary: V8Binary) -> V8ProcInfo:
    """The BPF step's info for a process running `binary`."""
    lay = binary.layout
    return V8ProcInfo(
        fp_marker=lay.fp_marker,
        fp_function=lay.fp_function,
        fp_bytecode_array=lay.fp_bytecode_array,
        fp_bytecode_offset=lay.fp_bytecode_offset,
        map_instance_type=lay.map_instance_type,
        jsfunction_shared=lay.jsfunction_shared,
        jsfunction_code=lay.jsfunction_code,
        code_entry=lay.code_entry,
        code_size=lay.code_size,
        bytecode_header=lay.bytecode_header,
        code_header=lay.code_header,
        offset_register=lay.bytecode_offset_register,
        jsfunction_first_type=lay.jsfunction_first_type,
        jsfunction_end_type=lay.jsfunction_end_type,
        bytecode_array_type=lay.type_bytecode_array,
        version=binary.version[0] << 8 | binary.version[1],
        code_flags=lay.code_flags,
        trampoline_offset=binary.trampoline - binary.builtins[0] if binary.trampoline else 0,
        builtins_size=binary.builtins[1] - binary.builtins[0] if binary.trampoline else 0,
    )
