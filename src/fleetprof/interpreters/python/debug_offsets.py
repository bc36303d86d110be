"""Parse and validate `_Py_DebugOffsets` (3.13+), the layout description CPython keeps at `_PyRuntime`.

The struct is a cookie, the version, a free-threaded flag, then groups of uint64 (most start with a sizeof,
the rest are offsetof values). Its own layout changes between minor versions (and changed during 3.13 and
3.14 pre-releases), so it is parsed with the group list of that minor and rejected otherwise.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from fleetprof.interpreters.python.layouts import NONE, SEMANTICS, STATE_BITS, PyLayout

COOKIE = b"xdebugpy"
_HEADER = struct.Struct("<8sQQ")
_MAX_OFFSET = 0xFFFE  # py_proc_info holds u16 offsets; 0xffff is PY_OFF_NONE

# Group name -> field names, in struct order. Source: Include/internal/pycore_runtime.h (3.13.0) and
# Include/internal/pycore_debug_offsets.h (3.14.0).
_Groups = tuple[tuple[str, tuple[str, ...]], ...]
_INTERP_13 = (
    "size",
    "id",
    "next",
    "threads_head",
    "gc",
    "imports_modules",
    "sysdict",
    "builtins",
    "ceval_gil",
    "gil_runtime_state",
    "gil_runtime_state_enabled",
    "gil_runtime_state_locked",
    "gil_runtime_state_holder",
)
_THREAD = (
    "size",
    "prev",
    "next",
    "interp",
    "current_frame",
    "thread_id",
    "native_thread_id",
    "datastack_chunk",
    "status",
)
_FRAME_13 = ("size", "previous", "executable", "instr_ptr", "localsplus", "owner")
_CODE_13 = (
    "size",
    "filename",
    "name",
    "qualname",
    "linetable",
    "firstlineno",
    "argcount",
    "localsplusnames",
    "localspluskinds",
    "co_code_adaptive",
)
_OBJECTS_BEFORE_SET: _Groups = (
    ("pyobject", ("size", "ob_type")),
    ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
    ("tuple_object", ("size", "ob_item", "ob_size")),
    ("list_object", ("size", "ob_item", "ob_size")),
)
_OBJECTS_AFTER_SET: _Groups = (
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
    ("unicode_object", ("size", "state", "length", "asciiobject_size")),
    ("gc", ("size", "collecting")),
)
_GROUPS_13: _Groups = (
    ("runtime_state", ("size", "finalizing", "interpreters_head")),
    ("interpreter_state", _INTERP_13),
    ("thread_state", _THREAD),
    ("interpreter_frame", _FRAME_13),
    ("code_object", _CODE_13),
    *_OBJECTS_BEFORE_SET,
    *_OBJECTS_AFTER_SET,
)
_GROUPS_14: _Groups = (
    ("runtime_state", ("size", "finalizing", "interpreters_head")),
    (
        "interpreter_state",
        (*_INTERP_13[:4], "threads_main", *_INTERP_13[4:], "code_object_generation", "tlbc_generation"),
    ),
    ("thread_state", _THREAD),
    ("interpreter_frame", (*_FRAME_13, "stackpointer", "tlbc_index")),
    ("code_object", (*_CODE_13, "co_tlbc")),
    *_OBJECTS_BEFORE_SET,
    ("set_object", ("size", "used", "table", "mask")),
    *_OBJECTS_AFTER_SET,
    ("gen_object", ("size", "gi_name", "gi_iframe", "gi_frame_state")),
    ("llist_node", ("next", "prev")),
    (
        "debugger_support",
        (
            "eval_breaker",
            "remote_debugger_support",
            "remote_debugging_enabled",
            "debugger_pending_call",
            "debugger_script_path",
            "debugger_script_path_size",
        ),
    ),
)

GROUPS: dict[int, _Groups] = {13: _GROUPS_13, 14: _GROUPS_14}

# PyLayout field -> (group, field, bytes fleetprof reads there): the offsets a 3.13+ layout takes from
# _Py_DebugOffsets, each checked to lie inside its group's sizeof.
_LAYOUT_FIELDS: dict[str, tuple[str, str, int]] = {
    "runtime_interp_head": ("runtime_state", "interpreters_head", 8),
    "interp_next": ("interpreter_state", "next", 8),
    "interp_tstate_head": ("interpreter_state", "threads_head", 8),
    "tstate_next": ("thread_state", "next", 8),
    "tstate_interp": ("thread_state", "interp", 8),
    "tstate_frame": ("thread_state", "current_frame", 8),
    "tstate_thread_id": ("thread_state", "thread_id", 8),
    "tstate_native_tid": ("thread_state", "native_thread_id", 8),
    "frame_previous": ("interpreter_frame", "previous", 8),
    "frame_code": ("interpreter_frame", "executable", 8),
    "frame_lasti": ("interpreter_frame", "instr_ptr", 8),
    "frame_entry": ("interpreter_frame", "owner", 1),
    "code_filename": ("code_object", "filename", 8),
    "code_name": ("code_object", "name", 8),
    "code_qualname": ("code_object", "qualname", 8),
    "code_linetable": ("code_object", "linetable", 8),
    "code_firstlineno": ("code_object", "firstlineno", 4),
    "code_argcount": ("code_object", "argcount", 4),
    "code_adaptive": ("code_object", "co_code_adaptive", 2),
    "ob_type": ("pyobject", "ob_type", 8),
    "var_ob_size": ("bytes_object", "ob_size", 8),
    "bytes_sval": ("bytes_object", "ob_sval", 1),
    "unicode_state": ("unicode_object", "state", 4),
    "unicode_length": ("unicode_object", "length", 8),
}


class DebugOffsetsError(ValueError):
    """The bytes at `_PyRuntime` are not a `_Py_DebugOffsets` fleetprof understands; the message says why."""


def struct_size(minor: int) -> int | None:
    """sizeof(_Py_DebugOffsets) in CPython 3.`minor`, None for a layout fleetprof does not know."""
    groups = GROUPS.get(minor)
    return None if groups is None else _HEADER.size + 8 * sum(len(fields) for _, fields in groups)


@dataclass(frozen=True, slots=True)
class DebugOffsets:
    """A parsed `_Py_DebugOffsets`: version, free-threaded flag, and every group's values by name."""

    version_hex: int
    free_threaded: bool
    values: dict[str, dict[str, int]]

    @property
    def minor(self) -> int:
        """Minor version (13 for 3.13.x)."""
        return (self.version_hex >> 16) & 0xFF

    @property
    def version(self) -> tuple[int, int, int]:
        """(major, minor, micro) from PY_VERSION_HEX."""
        return self.version_hex >> 24, self.minor, (self.version_hex >> 8) & 0xFF

    def get(self, group: str, field: str) -> int:
        """One value, e.g. get("thread_state", "current_frame")."""
        return self.values[group][field]


def parse_debug_offsets(data: bytes, expected_minor: int | None = None) -> DebugOffsets:
    """Parse the bytes at `_PyRuntime`; raise DebugOffsetsError naming the reason when they don't fit."""
    if len(data) < _HEADER.size:
        raise DebugOffsetsError(f"only {len(data)} bytes at _PyRuntime, the header needs {_HEADER.size}")
    cookie, version_hex, free_threaded = _HEADER.unpack_from(data)
    if cookie != COOKIE:
        raise DebugOffsetsError(f"no _Py_DebugOffsets cookie at _PyRuntime (found {cookie!r})")
    major, minor = version_hex >> 24, (version_hex >> 16) & 0xFF
    level = (version_hex >> 4) & 0xF
    name = f"{major}.{minor}.{(version_hex >> 8) & 0xFF}"
    if major != 3 or minor not in GROUPS:
        known = ", ".join(f"3.{m}" for m in sorted(GROUPS))
        raise DebugOffsetsError(
            f"unknown _Py_DebugOffsets layout of {name} (version {version_hex:#x}; known: {known})"
        )
    if expected_minor is not None and expected_minor != minor:
        raise DebugOffsetsError(f"_Py_DebugOffsets says {name} but the binary is 3.{expected_minor}")
    if level < 0xC:
        raise DebugOffsetsError(
            f"{name} is an alpha/beta pre-release: its _Py_DebugOffsets layout may differ"
        )
    if free_threaded not in (0, 1):
        raise DebugOffsetsError(
            f"free_threaded flag is {free_threaded}, not 0 or 1: corrupt _Py_DebugOffsets"
        )
    size = struct_size(minor)
    assert size is not None
    if len(data) < size:
        raise DebugOffsetsError(f"{name} _Py_DebugOffsets is {size} bytes, only {len(data)} available")
    words = struct.unpack_from(f"<{(size - _HEADER.size) // 8}Q", data, _HEADER.size)
    values: dict[str, dict[str, int]] = {}
    position = 0
    for group, fields in GROUPS[minor]:
        values[group] = dict(zip(fields, words[position : position + len(fields)], strict=True))
        position += len(fields)
    _validate(values, name)
    return DebugOffsets(version_hex, bool(free_threaded), values)


def _validate(values: dict[str, dict[str, int]], name: str) -> None:
    for group, field, width in _LAYOUT_FIELDS.values():
        size = values[group]["size"]
        if not 0 < size < 1 << 20:
            raise DebugOffsetsError(f"{name} _Py_DebugOffsets: implausible sizeof {group} = {size}")
        offset = values[group][field]
        if offset + width > size or offset > _MAX_OFFSET:
            raise DebugOffsetsError(
                f"{name} _Py_DebugOffsets: {group}.{field} = {offset} is outside sizeof {group} = {size}"
            )
    unicode = values["unicode_object"]
    if not unicode["state"] < unicode["asciiobject_size"] <= unicode["size"] - 8:
        raise DebugOffsetsError(f"{name} _Py_DebugOffsets: inconsistent unicode_object sizes {unicode}")


def layout_from_debug_offsets(offsets: DebugOffsets) -> PyLayout:
    """The PyLayout of a 3.13+ target, from its own debug offsets plus the behaviour table of its minor."""
    semantics = SEMANTICS.get((offsets.minor, offsets.free_threaded))
    if semantics is None:
        build = "free-threaded " if offsets.free_threaded else ""
        raise DebugOffsetsError(
            f"{build}CPython 3.{offsets.minor} is not supported: fleetprof has no walk rules for it"
            + (
                " (object headers, string state and per-thread bytecode differ)"
                if offsets.free_threaded
                else ""
            )
        )
    fields = {name: offsets.get(group, field) for name, (group, field, _) in _LAYOUT_FIELDS.items()}
    unicode_data = offsets.get("unicode_object", "size") - 8  # PyUnicodeObject: PyCompactUnicodeObject + data
    return PyLayout(
        minor=offsets.minor,
        free_threaded=offsets.free_threaded,
        source="_Py_DebugOffsets",
        semantics=semantics,
        cframe_current_frame=NONE,
        code_read_size=fields["code_adaptive"],
        code_code=NONE,
        unicode_ascii_size=offsets.get("unicode_object", "asciiobject_size"),
        unicode_compact_size=unicode_data,
        unicode_data=unicode_data,
        **fields,
        **STATE_BITS,
    )
