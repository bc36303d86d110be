"""CPython in one running process: which mapped file is CPython, its load bias, and the BPF's struct.

The agent's process tracker already knows mappings and biases and can call `proc_info` directly;
`find_python` does the whole job from /proc for tests, the reference walker and local tools.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fleetprof.interpreters.python.discovery import PythonBinary, UnsupportedPython, inspect_python_binary
from fleetprof.interpreters.python.layouts import NONE
from fleetprof.interpreters.python.objects import TypeAddresses
from fleetprof.interpreters.python.procinfo import PY_OFF_NONE, PyProcInfo
from fleetprof.process.bias import file_bias
from fleetprof.process.maps import MapKind, parse_maps
from fleetprof.process.procfs import ProcFS

# PyProcInfo offsets copied from the PyLayout field of the same name (NONE becomes PY_OFF_NONE).
_OFFSETS = (
    "runtime_interp_head",
    "interp_next",
    "interp_tstate_head",
    "tstate_next",
    "tstate_thread_id",
    "tstate_native_tid",
    "tstate_frame",
    "cframe_current_frame",
    "frame_previous",
    "frame_code",
    "frame_lasti",
    "frame_entry",
    "code_firstlineno",
    "code_argcount",
    "code_filename",
    "code_name",
    "ob_type",
    "code_linetable",
    "var_ob_size",
    "bytes_sval",
    "unicode_length",
    "unicode_state",
    "unicode_ascii_size",
    "unicode_compact_size",
)


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
        code_adaptive=max(lay.code_adaptive, 0),
        code_qualname=_off(lay.code_qualname if lay.code_qualname != NONE else lay.code_name),
        **{name: _off(getattr(lay, name)) for name in _OFFSETS},
    )


def find_python(pid: int) -> PythonProcess | None:
    """The CPython this process runs, with its load bias; None when there is none (or it is unsupported).

    Candidates: the executable, then mapped files named like libpython; deleted files are skipped (their
    path now names another file, or none).
    """
    procfs = ProcFS()
    try:
        start_time = procfs.stat(pid).start_time
        entries, _ = parse_maps(procfs.read_bytes(pid, "maps"))
    except OSError:
        return None
    mappings = [e for e in entries if e.kind is MapKind.FILE and not e.deleted]
    names = [procfs.exe(pid)] + [m.path for m in mappings if "libpython" in os.path.basename(m.path)]
    for path in dict.fromkeys(name for name in names if name):
        readable = procfs.rooted(pid, path)
        readable = readable if os.path.exists(readable) else path
        try:
            binary = inspect_python_binary(readable)
        except UnsupportedPython:
            continue
        if binary is None:
            continue
        bias = file_bias(readable, [m for m in mappings if m.path == path])
        if bias is not None:
            return PythonProcess(pid, binary, bias, start_time)
    return None
