"""Recognise CPython in an ELF file (libpython3.X.so or a static python3.X) and describe it, per file id.

`inspect_python_binary` returns None for a file that is not CPython, raises UnsupportedPython for a
CPython fleetprof cannot walk (with the reason), and otherwise returns a PythonBinary: version,
`_PyRuntime`'s ELF address, the eval loop's ranges and the struct layout. Results are cached by file id.
"""

from __future__ import annotations

import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from fleetprof.elf.reader import read_elf_info
from fleetprof.elf.view import ElfError, ElfView, Symbol
from fleetprof.interpreters.python.debug_offsets import (
    DebugOffsetsError,
    layout_from_debug_offsets,
    parse_debug_offsets,
    struct_size,
)
from fleetprof.interpreters.python.evalloop import EVAL_FUNCTION, EvalRange, eval_ranges
from fleetprof.interpreters.python.layouts import MIN_MINOR, PyLayout, table_layout
from fleetprof.process.fileid import file_id as compute_file_id

RUNTIME = "_PyRuntime"
_MARKERS = (RUNTIME, EVAL_FUNCTION, "Py_Version", "PyEval_EvalFrameEx", "Py_Initialize")
_TYPES = ("PyCode_Type", "PyUnicode_Type", "PyBytes_Type")
_NAME_VERSION = re.compile(r"python(\d)\.(\d+)")
_RODATA_VERSION = rb"(?<![\w.])3\.(%s)\.(\d+)(?:(?:a|b|rc)\d+)?\+?\x00"


class UnsupportedPython(Exception):
    """The file is CPython, but fleetprof cannot walk it; the message says why."""


@dataclass(frozen=True, slots=True)
class PythonBinary:
    """One CPython binary as the profiler needs it. Addresses are ELF virtual addresses (add the bias)."""

    path: str
    file_id: str
    version: tuple[int, int, int]  # (3, minor, micro); micro is -1 when the file does not tell
    version_source: str  # "Py_Version", "file name" or ".rodata"
    runtime_addr: int  # _PyRuntime
    eval_ranges: tuple[EvalRange, ...]  # hot part first, then `.cold` when found
    layout: PyLayout
    code_type_addr: int  # PyCode_Type, 0 when not exported
    unicode_type_addr: int  # PyUnicode_Type
    bytes_type_addr: int  # PyBytes_Type
    notes: tuple[str, ...] = ()  # what discovery could not establish (e.g. no `.cold` part found)


_cache: dict[str, PythonBinary | UnsupportedPython | None] = {}
_cache_lock = threading.Lock()
_MISSING = UnsupportedPython("not inspected yet")


def inspect_python_binary(path: str | Path, file_id: str | None = None) -> PythonBinary | None:
    """Describe the CPython in `path`; None when it is not CPython. Cached per file id."""
    spath = str(path)
    if file_id is None:
        try:
            file_id = compute_file_id(spath, read_elf_info(spath).build_id)
        except (ElfError, OSError):
            return None
    with _cache_lock:
        cached = _cache.get(file_id, _MISSING)
    if cached is _MISSING:
        try:
            cached = _inspect(spath, file_id)
        except UnsupportedPython as exc:
            cached = exc
        with _cache_lock:
            _cache[file_id] = cached
    if isinstance(cached, UnsupportedPython):
        raise cached
    return cached


def _inspect(path: str, file_id: str) -> PythonBinary | None:
    try:
        with ElfView(path) as image:
            if image.elf_class != 64 or not image.little_endian:
                return None
            return _describe(image, path, file_id)
    except (ElfError, struct.error, ValueError):
        return None


def _describe(image: ElfView, path: str, file_id: str) -> PythonBinary | None:
    symbols = image.symbols((*_MARKERS, *_TYPES))
    if not any(name in symbols for name in _MARKERS):
        return None
    version, source = _version(image, path, symbols)
    if version[1] < MIN_MINOR:
        raise UnsupportedPython(f"{path}: CPython {version[0]}.{version[1]} is older than 3.{MIN_MINOR}")
    runtime = symbols.get(RUNTIME)
    if runtime is None:
        raise UnsupportedPython(f"{path}: CPython 3.{version[1]} without a {RUNTIME} symbol")
    layout = _layout(image, path, version, runtime.value)
    ranges, note = eval_ranges(image)
    if not ranges:
        raise UnsupportedPython(f"{path}: {note}")
    return PythonBinary(
        path=path,
        file_id=file_id,
        version=version,
        version_source=source,
        runtime_addr=runtime.value,
        eval_ranges=ranges,
        layout=layout,
        code_type_addr=symbols["PyCode_Type"].value if "PyCode_Type" in symbols else 0,
        unicode_type_addr=symbols["PyUnicode_Type"].value if "PyUnicode_Type" in symbols else 0,
        bytes_type_addr=symbols["PyBytes_Type"].value if "PyBytes_Type" in symbols else 0,
        notes=(note,) if note else (),
    )


def _version(image: ElfView, path: str, symbols: dict[str, Symbol]) -> tuple[tuple[int, int, int], str]:
    """(major, minor, micro) from Py_Version (3.11+), else the file name or a version string in .rodata."""
    symbol = symbols.get("Py_Version")
    raw = image.read_vaddr(symbol.value, 4) if symbol is not None else None
    if raw is not None:
        hexversion = struct.unpack("<I", raw)[0]
        return (hexversion >> 24, (hexversion >> 16) & 0xFF, (hexversion >> 8) & 0xFF), "Py_Version"
    rodata = image.section_data(".rodata") or b""
    named = _NAME_VERSION.search(Path(path).name)
    if named is not None:
        minor = int(named.group(2))
        found = re.search(_RODATA_VERSION % str(minor).encode(), rodata)
        return (int(named.group(1)), minor, int(found.group(2)) if found else -1), "file name"
    found_all = {(int(m.group(1)), int(m.group(2))) for m in re.finditer(_RODATA_VERSION % rb"\d+", rodata)}
    if len({minor for minor, _ in found_all}) == 1:
        minor, micro = found_all.pop()
        return (3, minor, micro), ".rodata"
    raise UnsupportedPython(
        f"{path}: CPython of unknown version (no Py_Version, no python3.X in the file name)"
    )


def _layout(image: ElfView, path: str, version: tuple[int, int, int], runtime: int) -> PyLayout:
    layout = table_layout(version[1])
    if layout is not None:
        return layout
    size = struct_size(version[1])
    if size is None:
        raise UnsupportedPython(
            f"{path}: no layout for CPython 3.{version[1]} (no table, unknown _Py_DebugOffsets)"
        )
    data = image.read_vaddr(runtime, size)
    if data is None:
        raise UnsupportedPython(f"{path}: {RUNTIME} has no initialised data in the file")
    try:
        return layout_from_debug_offsets(parse_debug_offsets(data, version[1]))
    except DebugOffsetsError as exc:
        raise UnsupportedPython(f"{path}: {exc}") from None
