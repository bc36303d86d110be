"""CPython support for the profiler core: recognise CPython in new mappings, tell BPF where the eval loop is
and how to walk each process (struct py_proc_info), and symbolize Python frames while processes live."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import re
import struct
import threading
from pathlib import Path

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.interpreters.python.discovery import PythonBinary, UnsupportedPython, inspect_python_binary
from fleetprof.interpreters.python.process import PythonProcess, proc_info
from fleetprof.interpreters.python.symbolizer import UNKNOWN_FRAME, PythonSymbolizer
from fleetprof.interpreters.python.threadnames import ThreadNames
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.memory import process_start_time
from fleetprof.process.tracker import ExecMapping
from fleetprof.profile.model import Frame
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey, decode_frames

log = logging.getLogger(__name__)

# Only files that look like CPython are inspected (libpython3.X.so…, python3.X, python3, python).
_CANDIDATE = re.compile(r"^(lib)?python\d?(\.\d+)?[a-z]*(\.so.*)?$|^libpython")

PyFrameKey = tuple[int, int, int, int]  # pid, code object, lasti, checksum
MAX_WAITING = 4096


def _has_python(key: StackKey) -> bool:
    """Whether a stack holds a Python frame."""
    frames = key.frames
    kind_at = 20  # offset of struct frame.kind
    return any(
        frames[i + kind_at] == layout.FRAME_PYTHON
        for i in range(key.num_kernel * layout.FRAME_SIZE, len(frames), layout.FRAME_SIZE)
    )


class PythonSupport:
    """Keeps `py_procs` and `interp_ranges` in step with the processes that run CPython."""

    def __init__(
        self, py_procs: Map, interp_ranges: Map, cache_dir: Path | None = None, py_files: Map | None = None
    ) -> None:
        self._cache_dir = cache_dir
        self._procs = py_procs
        self._py_files = py_files
        self.waiting: list[StackKey] = []  # new stacks with Python frames of processes not registered yet
        self._ranges = interp_ranges
        self._lock = threading.Lock()
        self._pids: dict[int, int] = {}  # pid -> file key of its interpreter
        self._files: dict[int, PythonBinary] = {}
        self.symbolizer = PythonSymbolizer()
        self.thread_names = ThreadNames()
        self.frames: dict[PyFrameKey, Frame] = {}
        self.notes: dict[str, str] = {}  # path -> why its Python frames can't be walked
        self.unsupported: dict[int, str] = {}  # pid -> why its CPython can't be walked

    def interpreter_flags(self, pid: int, m: ExecMapping) -> int:
        """MAPPING_FLAG_INTERPRETER when `m` maps a CPython binary (registering the process), else 0."""
        if not _CANDIDATE.match(os.path.basename(m.path)):
            return 0
        key = file_id_u64(m.file_id)
        binary = self._files.get(key)
        if binary is None:
            try:
                binary = self._inspect(m.open_path or m.path, m.file_id)
            except UnsupportedPython as exc:
                self.notes[m.path] = str(exc)
                self.unsupported[pid] = str(exc)
                return 0
            except OSError as exc:
                self.notes[m.path] = f"cannot inspect: {exc}"
                return 0
            if binary is None:
                return 0
            self._register_file(key, binary)
        with self._lock:
            if self._pids.get(pid) != key:
                start_time = process_start_time(pid)
                if start_time is not None:
                    process = PythonProcess(pid, binary, m.bias, start_time)
                    self.symbolizer.register(process)
                    self.thread_names.register(process)
                info = proc_info(binary, m.bias)
                try:
                    self._procs.update(struct.pack("<I", pid), bytes(info))
                except BpfError as exc:
                    self.notes[m.path] = f"py_procs map full ({exc})"
                    return 0
                self._pids[pid] = key
        return layout.MAPPING_FLAG_INTERPRETER

    def prewarm(self, path: str, file_id: str) -> None:
        """Discover (and cache) CPython in a file a process is about to map."""
        if _CANDIDATE.match(os.path.basename(path)):
            with contextlib.suppress(UnsupportedPython, OSError):
                self._inspect(path, file_id)

    def _inspect(self, path: str, file_id: str) -> PythonBinary | None:
        """inspect_python_binary, cached per file id in memory and on disk (discovery of a stripped binary
        takes ~1 s)."""
        return inspect_python_binary(path, file_id, cache_dir=self._cache_dir)

    def _register_file(self, key: int, binary: PythonBinary) -> None:
        value = layout.InterpRanges()
        value.kind = layout.INTERP_PYTHON
        for i, rng in enumerate(binary.eval_ranges[: layout.MAX_INTERP_RANGES]):
            value.start[i] = rng.start
            value.end[i] = rng.end
        self._ranges.update(struct.pack("<Q", key), bytes(value))
        if self._py_files is not None:
            # The walk info at bias 0: BPF relocates it for processes not registered yet.
            try:
                self._py_files.update(struct.pack("<Q", key), bytes(proc_info(binary, 0)))
            except BpfError as exc:
                log.debug("py_files: %s", exc)
        self._files[key] = binary

    def in_eval_loop(self, key: int, elf_pc: int) -> bool:
        """Whether an ELF pc of a registered CPython file lies in its eval loop (as `interp_ranges` says)."""
        binary = self._files.get(key)
        if binary is None:
            return False
        return any(r.start <= elf_pc < r.end for r in binary.eval_ranges[: layout.MAX_INTERP_RANGES])

    def file_flags(self, key: int) -> int:
        """MAPPING_FLAG_INTERPRETER when the file is a registered CPython binary, else 0."""
        return layout.MAPPING_FLAG_INTERPRETER if key in self._files else 0

    def process_gone(self, pid: int) -> None:
        """Forget a process (exit or exec)."""
        with self._lock:
            if self._pids.pop(pid, None) is not None:
                self._procs.delete(struct.pack("<I", pid))
        self.thread_names.forget(pid)

    def on_new_stack(self, key: StackKey) -> None:
        """Symbolize the Python frames of a stack seen for the first time, while the process still lives."""
        if key.pid not in self._pids:
            if len(self.waiting) < MAX_WAITING and _has_python(key):
                self.waiting.append(key)  # walked through py_files: registered by the core's next rescan
            return
        if key.comm == key.pcomm:
            self.thread_names.observe(key.pid, key.tid)
        for raw in decode_frames(key.frames[key.num_kernel * layout.FRAME_SIZE :]):
            if raw.kind == layout.FRAME_PYTHON:
                self.resolve(key.pid, raw)

    def forget(self, pids: set[int]) -> None:
        """Drop the named frames and notes of processes gone for good (the agent, between windows)."""
        self.frames = {k: f for k, f in self.frames.items() if k[0] not in pids}
        self.symbolizer.captured.forget(pids)
        for pid in pids:
            self.unsupported.pop(pid, None)

    def waiting_pids(self) -> list[int]:
        """Processes with Python stacks waiting for their registration."""
        return list(dict.fromkeys(key.pid for key in self.waiting))

    def stop_waiting(self, pid: int) -> None:
        """Give up registering `pid` while it runs (its frames are tried once more at the end)."""
        self.waiting = [key for key in self.waiting if key.pid != pid]

    def retry_waiting(self) -> None:
        """Symbolize the waiting stacks of processes registered since; the others wait while their process
        lives (resolve() tries once more at the end)."""
        waiting, self.waiting = self.waiting, []
        for key in waiting:
            if key.pid in self._pids:
                self.on_new_stack(key)
            elif os.path.exists(f"/proc/{key.pid}"):
                self.waiting.append(key)

    def on_code_record(self, address: int, size: int) -> None:
        """Ring-buffer callback of `py_codes`: keep a code object's identity BPF captured at sample time (it
        names frames whose process or code object is gone; stored at once, before any exit cleanup)."""
        self.symbolizer.captured.add_record(ctypes.string_at(address, size))

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The symbolized frame (symbolized now if it was not seen live). An unnamed frame is not kept: its
        captured record may still be on its way."""
        fkey = (pid, raw.id, raw.addr, raw.aux)
        frame = self.frames.get(fkey)
        if frame is None:
            frame = self.symbolizer.symbolize(pid, raw.id, raw.addr, raw.aux)
            if frame is not UNKNOWN_FRAME:
                self.frames[fkey] = frame
        return frame

    def thread_name(self, pid: int, tid: int, os_name: str, process_name: str) -> str:
        """A sample's thread name: the OS one when the application set it, else the Python thread name."""
        return self.thread_names.thread_name(pid, tid, os_name, process_name)

    def stats(self) -> dict[str, int]:
        """Python processes and symbolization failures by reason."""
        out = {"python_processes": len(self._pids)}
        for reason, n in self.symbolizer.stats.items():
            out[f"python_symbolize: {reason}"] = n
        for path, n in self.symbolizer.named.items():
            out[f"python_named: {path}"] = n
        out["python_code_records"] = self.symbolizer.captured.received
        return out
