"""CPython struct layouts (x86-64, default GIL builds): per-version offsets as data, one row per minor.

Rows for 3.8-3.12 are compiled in. Every number was read from the DWARF of the pyenv builds
3.8.18, 3.9.18, 3.10.13, 3.11.7 and 3.12.1 by tools/python_offsets_dwarf.py (which names the C expression
behind each field), and tests/unit/test_python_offsets.py re-checks them against every libpython on the
machine. 3.13+ layouts are built from the target's own _Py_DebugOffsets (debug_offsets.py) plus the
`SEMANTICS` row of that minor, which holds what _Py_DebugOffsets does not say.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from fleetprof.interpreters.python.procinfo import (
    PY_F_CFRAME,
    PY_F_EXEC_TAGGED,
    PY_F_LASTI_PTR,
    PY_F_NATIVE_TID,
    PY_WALK_FRAMEOBJECT,
    PY_WALK_IS_ENTRY,
    PY_WALK_SHIM,
)

NONE = -1  # the field does not exist in this version (PY_OFF_NONE in C)
MIN_MINOR = 8


class LineTable(enum.IntEnum):
    """Format of a code object's line table."""

    LNOTAB = 1  # 3.8, 3.9: co_lnotab (byte delta u8, line delta s8), byte offsets
    LINETABLE_310 = 2  # 3.10: co_linetable (byte delta u8, line delta s8, -128 = no line), ranges
    LOCATIONS = 3  # 3.11+: co_linetable location table (PEP 626 / 657 entries), code units


@dataclass(frozen=True, slots=True)
class Semantics:
    """How one minor version walks and decodes: the part of a layout that is behaviour, not offsets."""

    walk_kind: int  # PY_WALK_*
    flags: int  # PY_F_*
    owner_shim_min: int  # PY_WALK_SHIM: owner >= this is a shim frame (C-stack / interpreter owned)
    lasti_shift: int  # int f_lasti >> shift = code units (3.8/3.9 count bytes)
    line_table: LineTable


@dataclass(frozen=True, slots=True)
class PyLayout:
    """Every offset fleetprof reads in one CPython version; NONE marks a field the version lacks."""

    minor: int
    free_threaded: bool
    source: str  # where the offsets come from: "table" or "_Py_DebugOffsets"
    semantics: Semantics
    # thread states
    runtime_interp_head: int  # _PyRuntimeState.interpreters.head
    interp_next: int  # PyInterpreterState.next
    interp_tstate_head: int  # .tstate_head (<=3.10) / .threads.head (3.11+)
    tstate_next: int  # PyThreadState.next
    tstate_interp: int  # PyThreadState.interp
    tstate_thread_id: int  # PyThreadState.thread_id (pthread_t)
    tstate_native_tid: int  # PyThreadState.native_thread_id (3.11+)
    tstate_frame: int  # .frame (<=3.10) / .cframe (3.11, 3.12) / .current_frame (3.13+)
    cframe_current_frame: int  # _PyCFrame.current_frame (3.11, 3.12)
    # frames
    frame_previous: int  # PyFrameObject.f_back / _PyInterpreterFrame.previous
    frame_code: int  # f_code / f_executable
    frame_lasti: int  # f_lasti (int) / prev_instr / instr_ptr
    frame_entry: int  # is_entry (3.11) / owner (3.12+)
    # code objects
    code_read_size: int  # bytes of PyCodeObject to read: sizeof (<=3.10) or offsetof co_code_adaptive
    code_adaptive: int  # offsetof(PyCodeObject, co_code_adaptive) (3.11+)
    code_code: int  # co_code bytes object (<=3.10)
    code_firstlineno: int
    code_argcount: int
    code_filename: int
    code_name: int
    code_qualname: int  # 3.11+
    code_linetable: int  # co_lnotab (3.8, 3.9) / co_linetable (3.10+)
    # objects
    ob_type: int  # PyObject.ob_type
    var_ob_size: int  # PyVarObject.ob_size (code objects 3.11+: number of code units)
    bytes_sval: int  # PyBytesObject.ob_sval
    unicode_length: int  # PyASCIIObject.length
    unicode_state: int  # PyASCIIObject.state (bit field word)
    unicode_ascii_size: int  # sizeof(PyASCIIObject): compact ASCII data follows
    unicode_compact_size: int  # sizeof(PyCompactUnicodeObject): compact non-ASCII data follows
    unicode_data: int  # PyUnicodeObject.data (legacy, non-compact strings)
    unicode_kind_bit: int  # state bit of `kind` (3 bits)
    unicode_compact_bit: int
    unicode_ascii_bit: int


_FRAMEOBJECT_8_9 = Semantics(PY_WALK_FRAMEOBJECT, 0, 0, 1, LineTable.LNOTAB)

SEMANTICS: dict[tuple[int, bool], Semantics] = {
    (8, False): _FRAMEOBJECT_8_9,
    (9, False): _FRAMEOBJECT_8_9,
    (10, False): Semantics(PY_WALK_FRAMEOBJECT, 0, 0, 0, LineTable.LINETABLE_310),
    (11, False): Semantics(
        PY_WALK_IS_ENTRY, PY_F_CFRAME | PY_F_LASTI_PTR | PY_F_NATIVE_TID, 0, 0, LineTable.LOCATIONS
    ),
    # owner_shim_min = FRAME_OWNED_BY_CSTACK (3), read from DWARF for 3.12 and 3.13
    (12, False): Semantics(
        PY_WALK_SHIM, PY_F_CFRAME | PY_F_LASTI_PTR | PY_F_NATIVE_TID, 3, 0, LineTable.LOCATIONS
    ),
    (13, False): Semantics(PY_WALK_SHIM, PY_F_LASTI_PTR | PY_F_NATIVE_TID, 3, 0, LineTable.LOCATIONS),
    # 3.14 inserts FRAME_OWNED_BY_INTERPRETER = 3 (thread base frame) before FRAME_OWNED_BY_CSTACK = 4,
    # and f_executable becomes a tagged _PyStackRef.
    (14, False): Semantics(
        PY_WALK_SHIM, PY_F_LASTI_PTR | PY_F_NATIVE_TID | PY_F_EXEC_TAGGED, 3, 0, LineTable.LOCATIONS
    ),
}

# PyASCIIObject.state bit fields of default builds 3.8-3.14 (interned:2, kind:3, compact:1, ascii:1, ...).
STATE_BITS = {"unicode_kind_bit": 2, "unicode_compact_bit": 5, "unicode_ascii_bit": 6}

# Offsets shared by every supported minor (PyObject / PyVarObject / PyBytesObject / PyASCIIObject heads).
_COMMON = {
    "tstate_next": 8,
    "tstate_interp": 16,
    "ob_type": 8,
    "var_ob_size": 16,
    "bytes_sval": 32,
    "unicode_length": 16,
    "unicode_state": 32,
    **STATE_BITS,
}

_FRAMEOBJECT_8_10 = {
    "runtime_interp_head": 32,
    "interp_next": 0,
    "interp_tstate_head": 8,
    "tstate_thread_id": 176,
    "tstate_native_tid": NONE,
    "tstate_frame": 24,
    "cframe_current_frame": NONE,
    "frame_previous": 24,
    "frame_code": 32,
    "frame_entry": NONE,
    "code_read_size": 176,
    "code_adaptive": NONE,
    "code_code": 48,
    "code_firstlineno": 40,
    "code_argcount": 16,
    "code_filename": 104,
    "code_name": 112,
    "code_qualname": NONE,
    "code_linetable": 120,
    "unicode_ascii_size": 48,
    "unicode_compact_size": 72,
    "unicode_data": 72,
}

_INTERPRETER_FRAME_11_12 = {
    "runtime_interp_head": 40,
    "interp_next": 0,
    "tstate_frame": 56,
    "frame_lasti": 56,
    "code_code": NONE,
    "code_filename": 112,
    "code_name": 120,
    "code_qualname": 128,
    "code_linetable": 136,
}

_ROWS: dict[int, dict[str, int]] = {
    8: {**_FRAMEOBJECT_8_10, "frame_lasti": 104},
    9: {**_FRAMEOBJECT_8_10, "frame_lasti": 104},
    10: {**_FRAMEOBJECT_8_10, "frame_lasti": 96},
    11: {
        **_INTERPRETER_FRAME_11_12,
        "interp_tstate_head": 16,
        "tstate_thread_id": 152,
        "tstate_native_tid": 160,
        "cframe_current_frame": 8,
        "frame_previous": 48,
        "frame_code": 32,
        "frame_entry": 68,  # is_entry
        "code_read_size": 184,
        "code_adaptive": 184,
        "code_firstlineno": 72,
        "code_argcount": 56,
        "unicode_ascii_size": 48,
        "unicode_compact_size": 72,
        "unicode_data": 72,
    },
    12: {
        **_INTERPRETER_FRAME_11_12,
        "interp_tstate_head": 72,
        "tstate_thread_id": 136,
        "tstate_native_tid": 144,
        "cframe_current_frame": 0,
        "frame_previous": 8,
        "frame_code": 0,
        "frame_entry": 70,  # owner
        "code_read_size": 192,
        "code_adaptive": 192,
        "code_firstlineno": 68,
        "code_argcount": 52,
        "unicode_ascii_size": 40,
        "unicode_compact_size": 56,
        "unicode_data": 56,
    },
}


def table_layout(minor: int) -> PyLayout | None:
    """The compiled-in layout of CPython 3.`minor` (3.8-3.12), None for other versions."""
    row = _ROWS.get(minor)
    if row is None:
        return None
    return PyLayout(
        minor=minor,
        free_threaded=False,
        source="table",
        semantics=SEMANTICS[(minor, False)],
        **_COMMON,
        **row,
    )
