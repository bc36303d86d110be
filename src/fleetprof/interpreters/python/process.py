"""CPython in one running process: which mapped file is CPython, its load bias, and the BPF's struct.

The agent's process tracker already knows mappings and biases and can call `proc_info` directly;
`find_python` does the whole job from /proc for tests, the reference walker and local tools.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fleetprof.elf.reader import ElfError, read_elf_info
from fleetprof.interpreters.python.discovery import PythonBinary, UnsupportedPython, inspect_python_binary
from fleetprof.interpreters.python.layouts import NONE
from fleetprof.interpreters.python.objects import TypeAddresses
from fleetprof.interpreters.python.procinfo import PY_OFF_NONE, PyProcInfo
from fleetprof.process.bias import load_bias as mapping_bias
from fleetprof.process.maps import MapKind, MapsEntry, parse_maps
from fleetprof.process.memory import process_start_time


@dataclass(frozen=True, slots=True)
class PythonProcess:
    """A process running CPython from `binary`, loaded at `bias` (runtime address - ELF address)."""

    pid: int
    binary: PythonBinary
    bias: int
    start_time: int  # /proc/PID/stat starttime: a different value means a different process

    @property
    def runtime_addr(self) -> int:
        """&_PyRuntime in the process."""
        return self.binary.runtime_addr + self.bias

    @property
    def types(self) -> TypeAddresses:
        """Process addresses of PyCode_Type, PyUnicode_Type and PyBytes_Type (0 when unknown)."""
        b = self.binary
        return TypeAddresses(
            *(
                addr + self.bias if addr else 0
                for addr in (b.code_type_addr, b.unicode_type_addr, b.bytes_type_addr)
            )
        )


def _off(value: int) -> int:
    return PY_OFF_NONE if value == NONE else value


def proc_info(binary: PythonBinary, bias: int) -> PyProcInfo:
    """The `struct py_proc_info` for a process that maps `binary` at `bias`."""
    lay = binary.layout
    sem = lay.semantics
    return PyProcInfo(
        runtime_addr=binary.runtime_addr + bias,
        code_type_addr=binary.code_type_addr + bias if binary.code_type_addr else 0,
        version=(binary.version[0] << 8) | binary.version[1],
        walk_kind=sem.walk_kind,
        flags=sem.flags,
        owner_shim_min=sem.owner_shim_min,
        lasti_shift=sem.lasti_shift,
        runtime_interp_head=_off(lay.runtime_interp_head),
        interp_next=_off(lay.interp_next),
        interp_tstate_head=_off(lay.interp_tstate_head),
        tstate_next=_off(lay.tstate_next),
        tstate_thread_id=_off(lay.tstate_thread_id),
        tstate_native_tid=_off(lay.tstate_native_tid),
        tstate_frame=_off(lay.tstate_frame),
        cframe_current_frame=_off(lay.cframe_current_frame),
        frame_previous=_off(lay.frame_previous),
        frame_code=_off(lay.frame_code),
        frame_lasti=_off(lay.frame_lasti),
        frame_entry=_off(lay.frame_entry),
        code_adaptive=max(lay.code_adaptive, 0),
        code_firstlineno=_off(lay.code_firstlineno),
        code_argcount=_off(lay.code_argcount),
        code_filename=_off(lay.code_filename),
        code_name=_off(lay.code_name),
        ob_type=_off(lay.ob_type),
    )


def _file_mappings(pid: int) -> list[MapsEntry]:
    """Executable file-backed mappings of `pid`."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as maps:
            entries, _ = parse_maps(maps.read())
    except OSError:
        return []
    return [e for e in entries if e.kind is MapKind.FILE]


def load_bias(path: str, mappings: list[tuple[int, int]]) -> int | None:
    """Load bias of ELF `path` from its executable mappings' (start, file offset)."""
    try:
        info = read_elf_info(path)
    except ElfError:
        return None
    for start, offset in mappings:
        bias = mapping_bias(info, start, offset)
        if bias is not None:
            return bias
    return None


def _candidates(pid: int, mappings: list[MapsEntry]) -> list[str]:
    """Mapped files that may hold CPython: the executable, then anything named like libpython."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    names = [exe] if exe else []
    names += [m.path for m in mappings if "libpython" in os.path.basename(m.path) and m.path not in names]
    return list(dict.fromkeys(names))


def find_python(pid: int) -> PythonProcess | None:
    """The CPython this process runs, with its load bias; None when there is none (or it is unsupported)."""
    start_time = process_start_time(pid)
    mappings = _file_mappings(pid)
    if start_time is None or not mappings:
        return None
    for path in _candidates(pid, mappings):
        readable = f"/proc/{pid}/root{path}"
        readable = readable if os.path.exists(readable) else path
        try:
            binary = inspect_python_binary(readable)
        except UnsupportedPython:
            continue
        if binary is None:
            continue
        bias = load_bias(readable, [(m.start, m.offset) for m in mappings if m.path == path])
        if bias is not None:
            return PythonProcess(pid, binary, bias, start_time)
    return None
