"""PHP support for the profiler core: recognise the Zend engine in new mappings, tell BPF where execute_ex
is (`interp_ranges`, INTERP_PHP) and how to walk each process (struct php_proc_info), and name PHP frames
from process memory while processes live."""

from __future__ import annotations

import logging
import os
import struct
import threading

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.interpreters.php.discovery import PhpBinary, PhpUnsupported, inspect_php_binary, is_php_name
from fleetprof.interpreters.php.procinfo import php_func_cookie, php_proc_info
from fleetprof.interpreters.php.symbolizer import RUNTIME, FunctionReader
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.memory import ProcessMemory
from fleetprof.process.tracker import ExecMapping
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey, decode_frames

log = logging.getLogger(__name__)

UNKNOWN_PHP = Frame(kind=FrameKind.INTERPRETED, function="<php frame>", runtime=RUNTIME)
PhpFrameKey = tuple[int, int, int, int]  # pid, zend_function, line, cookie


class _Process:
    """One registered PHP process: its engine and a reader of its memory (opened on first use)."""

    def __init__(self, pid: int, binary: PhpBinary) -> None:
        self.pid = pid
        self.binary = binary
        self.mem: ProcessMemory | None = None
        self.reader: FunctionReader | None = None

    def function_reader(self) -> FunctionReader | None:
        """The process's function reader, None when its memory can't be opened."""
        if self.reader is None:
            try:
                self.mem = ProcessMemory(self.pid)
            except OSError:
                return None
            self.reader = FunctionReader(self.mem, self.binary.layout)
        return self.reader

    def close(self) -> None:
        """Close the memory file (the process is gone, or exec'd another image)."""
        if self.mem is not None:
            self.mem.close()
            self.mem = self.reader = None


class PhpSupport:
    """Keeps `php_procs` and `interp_ranges` in step with the processes that run PHP; names their frames."""

    def __init__(self, php_procs: Map, interp_ranges: Map) -> None:
        self._procs_map = php_procs
        self._ranges = interp_ranges
        self._lock = threading.Lock()
        self._files: dict[int, PhpBinary] = {}
        self._procs: dict[int, _Process] = {}
        self.frames: dict[PhpFrameKey, Frame] = {}
        self.unsupported: dict[int, str] = {}  # pid -> why its PHP can't be walked
        self.named = 0
        self.unnamed = 0

    def interpreter_flags(self, pid: int, m: ExecMapping) -> int:
        """MAPPING_FLAG_INTERPRETER when `m` maps a Zend engine (registering the process), else 0."""
        if not is_php_name(m.path):
            return 0
        found = inspect_php_binary(m.open_path or m.path, m.file_id)
        if isinstance(found, PhpUnsupported):
            self.unsupported[pid] = found.reason
            return 0
        if found is None:
            return 0
        key = file_id_u64(m.file_id)
        if key not in self._files:
            self._register_file(key, found)
        with self._lock:
            known = self._procs.get(pid)
            if known is None or known.binary is not found:
                cur = found.executor_globals + m.bias + found.layout.eg_current_execute_data
                try:
                    self._procs_map.update(struct.pack("<I", pid), bytes(php_proc_info(found.layout, cur)))
                except BpfError as exc:
                    self.unsupported[pid] = f"php_procs map full ({exc})"
                    return 0
                if known is not None:
                    known.close()
                self._procs[pid] = _Process(pid, found)
        return layout.MAPPING_FLAG_INTERPRETER

    def _register_file(self, key: int, binary: PhpBinary) -> None:
        value = layout.InterpRanges()
        value.kind = layout.INTERP_PHP
        start, size = binary.execute_ex
        value.start[0], value.end[0] = start, start + size
        self._ranges.update(struct.pack("<Q", key), bytes(value))
        self._files[key] = binary

    def file_flags(self, key: int) -> int:
        """MAPPING_FLAG_INTERPRETER when the file is a registered Zend engine, else 0."""
        return layout.MAPPING_FLAG_INTERPRETER if key in self._files else 0

    def process_gone(self, pid: int) -> None:
        """Forget a process (exit or exec); its frames already named stay."""
        with self._lock:
            proc = self._procs.pop(pid, None)
            if proc is not None:
                proc.close()
                self._procs_map.delete(struct.pack("<I", pid))

    def forget(self, pids: set[int]) -> None:
        """Drop the named frames and notes of processes gone for good (the agent, between windows)."""
        self.frames = {k: f for k, f in self.frames.items() if k[0] not in pids}
        for pid in pids:
            self.unsupported.pop(pid, None)

    def on_new_stack(self, key: StackKey) -> None:
        """Name the PHP frames of a stack seen for the first time, while the process still lives."""
        if key.pid not in self._procs:
            return
        for raw in decode_frames(key.frames[key.num_kernel * layout.FRAME_SIZE :]):
            if raw.kind == layout.FRAME_PHP:
                self.resolve(key.pid, raw)

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The named frame (named now if it was not seen live); UNKNOWN_PHP when the process is gone or the
        function was freed and its address reused (the cookie differs)."""
        fkey = (pid, raw.id, raw.addr, raw.aux)
        frame = self.frames.get(fkey)
        if frame is not None:
            return frame
        frame = self._name(pid, raw)
        if frame is UNKNOWN_PHP:
            self.unnamed += 1
        else:
            self.named += 1
            self.frames[fkey] = frame
        return frame

    def _name(self, pid: int, raw: RawFrame) -> Frame:
        proc = self._procs.get(pid)
        reader = proc.function_reader() if proc is not None and os.path.exists(f"/proc/{pid}") else None
        if reader is None:
            return UNKNOWN_PHP
        lay = reader.layout
        head = reader.mem.read(raw.id, max(lay.fn_name, lay.fn_scope) + 8)
        if head is None:
            return UNKNOWN_PHP
        name = int.from_bytes(head[lay.fn_name : lay.fn_name + 8], "little")
        scope = int.from_bytes(head[lay.fn_scope : lay.fn_scope + 8], "little")
        if php_func_cookie(name, scope, head[lay.fn_type]) != raw.aux:
            return UNKNOWN_PHP
        frame = reader.frame(raw.id, raw.addr)
        return UNKNOWN_PHP if isinstance(frame, str) else frame

    def stats(self) -> dict[str, int]:
        """PHP processes and frames named or not."""
        return {"php_processes": len(self._procs), "php_named": self.named, "php_unnamed": self.unnamed}
