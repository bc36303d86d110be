"""Read CPython struct offsets from a libpython's DWARF with gdb, under fleetprof's layout field names.

Usage: python tools/python_offsets_dwarf.py /root/.pyenv/versions/3.12.1/lib/libpython3.12.so.1.0
Prints one JSON object; tests/unit/test_python_offsets.py compares it with the shipped tables. Each entry
below names the C expression a number comes from, per version range.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

# layout field -> ((first minor, last minor, gdb expression), ...); "OFF(T, f)" is offsetof(T, f).
_FIELDS: dict[str, tuple[tuple[int, int, str], ...]] = {
    "runtime_interp_head": ((8, 13, "OFF(_PyRuntimeState, interpreters.head)"),),
    "interp_next": ((8, 13, "OFF(PyInterpreterState, next)"),),
    "interp_tstate_head": (
        (8, 10, "OFF(PyInterpreterState, tstate_head)"),
        (11, 13, "OFF(PyInterpreterState, threads.head)"),
    ),
    "tstate_next": ((8, 13, "OFF(PyThreadState, next)"),),
    "tstate_interp": ((8, 13, "OFF(PyThreadState, interp)"),),
    "tstate_thread_id": ((8, 13, "OFF(PyThreadState, thread_id)"),),
    "tstate_native_tid": ((11, 13, "OFF(PyThreadState, native_thread_id)"),),
    "tstate_frame": (
        (8, 10, "OFF(PyThreadState, frame)"),
        (11, 12, "OFF(PyThreadState, cframe)"),
        (13, 13, "OFF(PyThreadState, current_frame)"),
    ),
    "cframe_current_frame": ((11, 12, "OFF(_PyCFrame, current_frame)"),),
    "frame_previous": (
        (8, 10, "OFF(PyFrameObject, f_back)"),
        (11, 13, "OFF(struct _PyInterpreterFrame, previous)"),
    ),
    "frame_code": (
        (8, 10, "OFF(PyFrameObject, f_code)"),
        (11, 12, "OFF(struct _PyInterpreterFrame, f_code)"),
        (13, 13, "OFF(struct _PyInterpreterFrame, f_executable)"),
    ),
    "frame_lasti": (
        (8, 10, "OFF(PyFrameObject, f_lasti)"),
        (11, 12, "OFF(struct _PyInterpreterFrame, prev_instr)"),
        (13, 13, "OFF(struct _PyInterpreterFrame, instr_ptr)"),
    ),
    "frame_entry": (
        (11, 11, "OFF(struct _PyInterpreterFrame, is_entry)"),
        (12, 13, "OFF(struct _PyInterpreterFrame, owner)"),
    ),
    "owner_shim_min": ((12, 13, "(long)FRAME_OWNED_BY_CSTACK"),),
    "code_read_size": ((8, 10, "sizeof(PyCodeObject)"), (11, 13, "OFF(PyCodeObject, co_code_adaptive)")),
    "code_adaptive": ((11, 13, "OFF(PyCodeObject, co_code_adaptive)"),),
    "code_code": ((8, 10, "OFF(PyCodeObject, co_code)"),),
    "code_firstlineno": ((8, 13, "OFF(PyCodeObject, co_firstlineno)"),),
    "code_argcount": ((8, 13, "OFF(PyCodeObject, co_argcount)"),),
    "code_filename": ((8, 13, "OFF(PyCodeObject, co_filename)"),),
    "code_name": ((8, 13, "OFF(PyCodeObject, co_name)"),),
    "code_qualname": ((11, 13, "OFF(PyCodeObject, co_qualname)"),),
    "code_linetable": ((8, 9, "OFF(PyCodeObject, co_lnotab)"), (10, 13, "OFF(PyCodeObject, co_linetable)")),
    "ob_type": ((8, 13, "OFF(PyObject, ob_type)"),),
    "var_ob_size": ((8, 13, "OFF(PyVarObject, ob_size)"),),
    "bytes_sval": ((8, 13, "OFF(PyBytesObject, ob_sval)"),),
    "unicode_length": ((8, 13, "OFF(PyASCIIObject, length)"),),
    "unicode_state": ((8, 13, "OFF(PyASCIIObject, state)"),),
    "unicode_ascii_size": ((8, 13, "sizeof(PyASCIIObject)"),),
    "unicode_compact_size": ((8, 13, "sizeof(PyCompactUnicodeObject)"),),
    "unicode_data": ((8, 13, "OFF(PyUnicodeObject, data)"),),
}
# Bit positions inside PyASCIIObject.state, read from `ptype/o` ("32: 2 | 4 */ unsigned int kind : 3;").
_STATE_BITS = {"unicode_kind_bit": "kind", "unicode_compact_bit": "compact", "unicode_ascii_bit": "ascii"}


def _expr(text: str) -> str:
    return re.sub(r"OFF\(([^,]+), ([^)]+)\)", r"(long)&((\1 *)0)->\2", text)


def dwarf_offsets(library: str, minor: int) -> dict[str, int]:
    """Every layout field that exists for 3.`minor`, evaluated by gdb against `library`'s DWARF."""
    names = []
    args = ["gdb", "-batch", "-nx"]
    for name, ranges in _FIELDS.items():
        for first, last, expr in ranges:
            if first <= minor <= last:
                names.append(name)
                args += ["-ex", f"print {_expr(expr)}"]
    args += ["-ex", "ptype/o PyASCIIObject", library]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False).stdout
    values = [int(v) for v in re.findall(r"^\$\d+ = (-?\d+)$", out, re.MULTILINE)]
    if len(values) != len(names):
        raise RuntimeError(f"gdb answered {len(values)} of {len(names)} expressions for {library}:\n{out}")
    result = dict(zip(names, values, strict=True))
    for name, member in _STATE_BITS.items():
        found = re.search(rf"/\*\s+\d+:\s*(\d+)\s+\|\s+\d+ \*/\s+unsigned int {member} : 1?\d;", out)
        if found is None:
            raise RuntimeError(f"no bit field {member} in PyASCIIObject.state of {library}")
        result[name] = int(found.group(1))
    return result


def main() -> None:
    """Print the offsets of the library named on the command line as JSON."""
    library = sys.argv[1]
    found = re.search(r"python3\.(\d+)", library)
    if found is None:
        raise SystemExit("name the minor version: the library path must contain python3.X")
    print(json.dumps(dwarf_offsets(library, int(found.group(1))), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
