"""Turn (pid, code object address, lasti, checksum) into a Python Frame, reading the process's memory.

Code objects are cached per (process, address, checksum); a pid whose start time changed is a new
process and starts afresh. Anything unreadable or inconsistent gives `<unknown python frame>` and bumps
a reason counter in `stats`; nothing here raises for bad input.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict

from fleetprof.interpreters.python.objects import CodeInfo, ObjectReader
from fleetprof.interpreters.python.process import PythonProcess, find_python
from fleetprof.interpreters.python.procinfo import PY_LASTI_NONE
from fleetprof.process.memory import ProcessMemory, process_start_time
from fleetprof.profile.model import Frame, FrameKind

UNKNOWN_FUNCTION = "<unknown python frame>"
CACHE_SIZE = 16384  # code objects per process
RECHECK_SECONDS = 1.0  # how often a pid's start time is re-read


def unknown_frame() -> Frame:
    """The frame shown for a Python frame that could not be symbolized."""
    return Frame(kind=FrameKind.PYTHON, function=UNKNOWN_FUNCTION)


class ProcessSymbolizer:
    """Symbolizes Python frames of one process (one start time), with an LRU cache of code objects."""

    def __init__(
        self, process: PythonProcess, mem: ProcessMemory | None = None, stats: Counter[str] | None = None
    ) -> None:
        self.process = process
        self.mem = mem if mem is not None else ProcessMemory(process.pid)
        self.reader = ObjectReader(self.mem, process.binary.layout, process.types)
        self.stats: Counter[str] = stats if stats is not None else Counter()  # failure reason -> count
        self._cache: OrderedDict[tuple[int, int], CodeInfo] = OrderedDict()

    def code_info(self, code: int, checksum: int) -> CodeInfo | str:
        """The code object at `code` if its checksum still matches, else the reason it does not."""
        key = (code, checksum)
        info = self._cache.get(key)
        if info is not None:
            self._cache.move_to_end(key)
            return info
        read = self.reader.read_code(code)
        if isinstance(read, str):
            return read
        if read.checksum != checksum:
            return "checksum mismatch"
        self._cache[key] = read
        if len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return read

    def symbolize(self, code: int, lasti: int, checksum: int) -> Frame:
        """The Frame for one sampled Python frame; `<unknown python frame>` when it cannot be read."""
        info = self.code_info(code, checksum)
        if isinstance(info, str):
            self.stats[info] += 1
            return unknown_frame()
        if lasti == PY_LASTI_NONE:
            line: int | None = info.firstlineno
        elif lasti < info.code_units:
            line = info.lines.line_at(lasti * 2)
        else:
            self.stats["instruction offset past the bytecode"] += 1
            line = None
        return Frame(
            kind=FrameKind.PYTHON,
            function=info.qualname,
            file=info.filename,
            line=line if line is not None and line > 0 else 0,
            start_line=info.firstlineno,
        )


class PythonSymbolizer:
    """Symbolizes Python frames of any process on the host; one ProcessSymbolizer per live process."""

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()  # failure reason -> count, over all processes
        self._processes: dict[int, tuple[ProcessSymbolizer | None, int | None, float]] = {}

    def symbolize(self, pid: int, code: int, lasti: int, checksum: int) -> Frame:
        """The Frame for one Python frame of `pid`."""
        symbolizer = self._for_pid(pid)
        if symbolizer is None:
            self.stats["no supported CPython in the process"] += 1
            return unknown_frame()
        return symbolizer.symbolize(code, lasti, checksum)

    def register(self, process: PythonProcess) -> None:
        """Use what the caller already knows about a process (binary, bias) instead of rediscovering it."""
        entry = self._processes.get(process.pid)
        if entry is not None and entry[0] is not None and entry[1] == process.start_time:
            return
        self.forget(process.pid)
        symbolizer = ProcessSymbolizer(process, stats=self.stats)
        self._processes[process.pid] = (symbolizer, process.start_time, time.monotonic())

    def forget(self, pid: int) -> None:
        """Drop everything about `pid` (call on process exit)."""
        entry = self._processes.pop(pid, None)
        if entry is not None and entry[0] is not None:
            entry[0].mem.close()

    def _for_pid(self, pid: int) -> ProcessSymbolizer | None:
        now = time.monotonic()
        entry = self._processes.get(pid)
        if entry is not None and now - entry[2] < RECHECK_SECONDS:
            return entry[0]
        start_time = process_start_time(pid)
        if entry is not None and entry[1] == start_time:
            self._processes[pid] = (entry[0], start_time, now)
            return entry[0]
        self.forget(pid)
        process = find_python(pid) if start_time is not None else None
        symbolizer = ProcessSymbolizer(process, stats=self.stats) if process is not None else None
        self._processes[pid] = (symbolizer, start_time, now)
        return symbolizer
