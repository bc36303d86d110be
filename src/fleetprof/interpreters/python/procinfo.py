"""Python mirror of python_offsets.h: the per-process struct the BPF walker reads and its frame record.

Field names and constants are identical to the C header; a test compiles the header and compares.
"""

from __future__ import annotations

import ctypes

PY_OFF_NONE = 0xFFFF
PY_LASTI_NONE = 0xFFFFFFFF

PY_WALK_FRAMEOBJECT = 1
PY_WALK_IS_ENTRY = 2
PY_WALK_SHIM = 3

PY_F_CFRAME = 0x01
PY_F_LASTI_PTR = 0x02
PY_F_EXEC_TAGGED = 0x04
PY_F_NATIVE_TID = 0x08

PY_STATE_KIND_SHIFT = 2
PY_STATE_COMPACT_SHIFT = 5
PY_STATE_ASCII_SHIFT = 6

PY_CODE_NAME_MAX = 96
PY_CODE_FILE_MAX = 160
PY_CODE_TABLE_MAX = 512
PY_CODE_F_FILE_TAIL = 0x01

PY_CSUM_BASIS = 0x811C9DC5
PY_CSUM_PRIME = 0x01000193
_U32 = 0xFFFFFFFF


class PyProcInfo(ctypes.Structure):
    """`struct py_proc_info`: what the BPF walker needs to find and walk one process's Python frames."""

    _fields_ = (
        ("runtime_addr", ctypes.c_uint64),
        ("code_type_addr", ctypes.c_uint64),
        ("version", ctypes.c_uint16),
        ("walk_kind", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("owner_shim_min", ctypes.c_uint8),
        ("lasti_shift", ctypes.c_uint8),
        ("reserved0", ctypes.c_uint16),
        ("runtime_interp_head", ctypes.c_uint16),
        ("interp_next", ctypes.c_uint16),
        ("interp_tstate_head", ctypes.c_uint16),
        ("tstate_next", ctypes.c_uint16),
        ("tstate_thread_id", ctypes.c_uint16),
        ("tstate_native_tid", ctypes.c_uint16),
        ("tstate_frame", ctypes.c_uint16),
        ("cframe_current_frame", ctypes.c_uint16),
        ("frame_previous", ctypes.c_uint16),
        ("frame_code", ctypes.c_uint16),
        ("frame_lasti", ctypes.c_uint16),
        ("frame_entry", ctypes.c_uint16),
        ("code_adaptive", ctypes.c_uint16),
        ("code_firstlineno", ctypes.c_uint16),
        ("code_argcount", ctypes.c_uint16),
        ("code_filename", ctypes.c_uint16),
        ("code_name", ctypes.c_uint16),
        ("ob_type", ctypes.c_uint16),
        ("code_qualname", ctypes.c_uint16),
        ("code_linetable", ctypes.c_uint16),
        ("var_ob_size", ctypes.c_uint16),
        ("bytes_sval", ctypes.c_uint16),
        ("unicode_length", ctypes.c_uint16),
        ("unicode_state", ctypes.c_uint16),
        ("unicode_ascii_size", ctypes.c_uint16),
        ("unicode_compact_size", ctypes.c_uint16),
    )

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name):#x}" for name, _ in self._fields_)
        return f"PyProcInfo({fields})"


class PyFrameRecord(ctypes.Structure):
    """`struct py_frame_record`: one Python frame as the BPF walker sends it (16 bytes)."""

    _fields_ = (
        ("code", ctypes.c_uint64),
        ("lasti", ctypes.c_uint32),
        ("checksum", ctypes.c_uint32),
    )


class PyCodeRecord(ctypes.Structure):
    """`struct py_code_record`: a code object's identity, copied by BPF the first time a process's walker
    emits it (808 bytes)."""

    _fields_ = (
        ("code", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("checksum", ctypes.c_uint32),
        ("firstlineno", ctypes.c_int32),
        ("table_size", ctypes.c_uint32),
        ("version", ctypes.c_uint16),
        ("name_len", ctypes.c_uint16),
        ("file_len", ctypes.c_uint16),
        ("table_len", ctypes.c_uint16),
        ("name_kind", ctypes.c_uint8),
        ("file_kind", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("reserved0", ctypes.c_uint8),
        ("reserved1", ctypes.c_uint32),
        ("name", ctypes.c_char * PY_CODE_NAME_MAX),
        ("file", ctypes.c_char * PY_CODE_FILE_MAX),
        ("table", ctypes.c_uint8 * PY_CODE_TABLE_MAX),
    )


class PyCodeKey(ctypes.Structure):
    """`struct py_code_key`: key of the BPF `py_code_seen` map."""

    _fields_ = (
        ("code", ctypes.c_uint64),
        ("pid", ctypes.c_uint32),
        ("checksum", ctypes.c_uint32),
        ("start", ctypes.c_uint32),
        ("reserved", ctypes.c_uint32),
    )


def _step(h: int, word: int) -> int:
    return ((h ^ (word & _U32)) * PY_CSUM_PRIME) & _U32


def code_checksum(firstlineno: int, argcount: int, filename: int, name: int) -> int:
    """`py_code_checksum()`: FNV-1a over co_firstlineno, co_argcount and the folded name pointers."""
    h = _step(PY_CSUM_BASIS, firstlineno)
    h = _step(h, argcount)
    h = _step(h, filename ^ (filename >> 32))
    return _step(h, name ^ (name >> 32))
