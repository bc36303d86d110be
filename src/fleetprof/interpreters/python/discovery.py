"""Recognise CPython in an ELF file (libpython3.X.so or a static python3.X) and describe it, per file id.

`inspect_python_binary` returns None for a file that is not CPython, raises UnsupportedPython for a
CPython fleetprof cannot walk (with the reason), and otherwise returns a PythonBinary: version,
`_PyRuntime`'s ELF address, the eval loop's ranges and the struct layout. Results have one cache, by file
id: in memory for the process, and on disk when the caller names a directory (inspecting a stripped binary
takes about a second); concurrent callers for one file share a single inspection.
"""

from __future__ import annotations

import logging
import os
import pickle
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


log = logging.getLogger(__name__)

# On disk: `<cache_dir>/<file id>.pickle` holding (CACHE_FORMAT, PythonBinary | None | reason it is
# unsupported). Bump CACHE_FORMAT when PythonBinary or what discovery finds changes.
CACHE_FORMAT = 1
_Result = PythonBinary | UnsupportedPython | None
_cache: dict[str, _Result] = {}
_inspecting: dict[str, threading.Lock] = {}  # file id -> held while one caller inspects it
_cache_lock = threading.Lock()
_MISSING = UnsupportedPython("not inspected yet")


def inspect_python_binary(
    path: str | Path, file_id: str | None = None, cache_dir: Path | None = None
) -> PythonBinary | None:
    """Describe the CPython in `path`; None when it is not CPython. Cached per file id (see the module
    docstring); `cache_dir` keeps results, the negative ones too, across runs."""
    spath = str(path)
    if file_id is None:
        try:
            file_id = compute_file_id(spath, read_elf_info(spath).build_id)
        except (ElfError, OSError):
            return None
    with _cache_lock:
        result = _cache.get(file_id, _MISSING)
        lock = _inspecting.setdefault(file_id, threading.Lock()) if result is _MISSING else None
    if lock is not None:
        with lock:
            with _cache_lock:
                result = _cache.get(file_id, _MISSING)
            if result is _MISSING:
                result = _load(cache_dir, file_id)
                if result is _MISSING:
                    try:
                        result = _inspect(spath, file_id)
                    except UnsupportedPython as exc:
                        result = exc
                    _save(cache_dir, file_id, result)
                with _cache_lock:
                    _cache[file_id] = result
                    _inspecting.pop(file_id, None)
    if isinstance(result, UnsupportedPython):
        raise result
    return result


def _load(cache_dir: Path | None, file_id: str) -> _Result:
    """The result kept on disk for `file_id`, _MISSING when there is none to trust (absent, another format,
    unreadable, or a file this user doesn't own or others may write: it is unpickled)."""
    if cache_dir is None:
        return _MISSING
    path = cache_dir / f"{file_id}.pickle"
    try:
        with open(path, "rb") as stream:
            info = os.fstat(stream.fileno())
            if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                return _MISSING
            version, value = pickle.load(stream)
    except (OSError, pickle.PickleError, ValueError, TypeError, EOFError, AttributeError, ImportError):
        return _MISSING
    if version != CACHE_FORMAT:
        return _MISSING
    if isinstance(value, str):
        return UnsupportedPython(value)
    return value if value is None or isinstance(value, PythonBinary) else _MISSING


def _save(cache_dir: Path | None, file_id: str, result: _Result) -> None:
    """Keep `result` on disk (atomically: a reader sees the old file or the new one)."""
    if cache_dir is None:
        return
    value = str(result) if isinstance(result, UnsupportedPython) else result
    path = cache_dir / f"{file_id}.pickle"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(pickle.dumps((CACHE_FORMAT, value)))
        tmp.replace(path)
    except OSError as exc:
        log.debug("cannot keep CPython discovery of %s in %s: %s", file_id, cache_dir, exc)
        tmp.unlink(missing_ok=True)


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
