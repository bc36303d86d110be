"""Turn (pid, code object address, lasti, checksum) into a Python Frame: from the process's memory while it
is readable and consistent, else from the code object's identity BPF captured at sample time.

Code objects are cached per (process, address, checksum); a pid whose start time changed is a new
process and starts afresh. A frame neither path names gives `<unknown python frame>` and bumps a reason
counter in `stats`; `named` counts which path named each frame; nothing here raises for bad input.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from fleetprof.interpreters.python.captured import CapturedCodes
from fleetprof.interpreters.python.objects import CodeInfo, ObjectReader
from fleetprof.interpreters.python.process import PythonProcess, find_python
from fleetprof.interpreters.python.procinfo import PY_LASTI_NONE
from fleetprof.process.memory import MemoryReader, ProcessMemory, process_start_time
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.symbolize.lru import BoundedLru

UNKNOWN_FUNCTION = "<unknown python frame>"
UNKNOWN_FRAME = Frame(kind=FrameKind.PYTHON, function=UNKNOWN_FUNCTION)
CACHE_SIZE = 16384  # code objects per process
RECHECK_SECONDS = 1.0  # how often a pid's start time is re-read


@dataclass(slots=True)
class _Code:
    """A cached code object and the Frames made for its lines (many instructions share a line)."""

    info: CodeInfo
    frames: dict[int, Frame] = field(default_factory=dict)

    def frame(self, line: int) -> Frame:
        """The Frame of this code object at `line` (0 when unknown)."""
        found = self.frames.get(line)
        if found is None:
            info = self.info
            found = self.frames[line] = Frame(
                kind=FrameKind.PYTHON,
                function=info.qualname,
                file=info.filename,
                line=line,
                start_line=info.firstlineno,
            )
        return found


class ProcessSymbolizer:
    """Symbolizes Python frames of one process (one start time), with an LRU cache of code objects."""

    def __init__(
        self, process: PythonProcess, mem: MemoryReader | None = None, stats: Counter[str] | None = None
    ) -> None:
        self.process = process
        self.mem = mem if mem is not None else ProcessMemory(process.pid)
        self.reader = ObjectReader(self.mem, process.binary.layout, process.types)
        self.stats: Counter[str] = stats if stats is not None else Counter()  # failure reason -> count
        self._codes: BoundedLru[tuple[int, int], _Code] = BoundedLru(CACHE_SIZE)

    def symbolize(self, code: int, lasti: int, checksum: int) -> Frame:
        """The Frame for one sampled Python frame; `<unknown python frame>` when it cannot be read."""
        found = self.lookup(code, lasti, checksum)
        if isinstance(found, str):
            self.stats[found] += 1
            return UNKNOWN_FRAME
        return found

    def lookup(self, code: int, lasti: int, checksum: int) -> Frame | str:
        """The Frame for one sampled Python frame from memory, or the reason it cannot be read."""
        entry = self._codes.get((code, checksum))
        if entry is None:
            read = self.reader.read_code(code)
            if isinstance(read, str):
                return read
            if read.checksum != checksum:
                return "checksum mismatch"
            entry = _Code(read)
            self._codes.put((code, checksum), entry)
        info = entry.info
        if lasti == PY_LASTI_NONE:
            line: int | None = info.firstlineno
        elif lasti < info.code_units:
            line = info.lines.line_at(lasti * 2)
        else:
            self.stats["instruction offset past the bytecode"] += 1
            line = None
        return entry.frame(line if line is not None and line > 0 else 0)


@dataclass(slots=True)
class _Pid:
    symbolizer: ProcessSymbolizer | None  # None: no supported CPython in the process (or it is gone)
    start_time: int | None
    checked_at: float  # monotonic time the start time was last read


class PythonSymbolizer:
    """Symbolizes Python frames of any process on the host; one ProcessSymbolizer per live process."""

    def __init__(self, captured: CapturedCodes | None = None) -> None:
        self.stats: Counter[str] = Counter()  # failure reason -> count, over all processes
        self.named: Counter[str] = Counter()  # "memory" / "captured" -> frames named that way
        self.captured = captured if captured is not None else CapturedCodes()
        self._processes: dict[int, _Pid] = {}

    def symbolize(self, pid: int, code: int, lasti: int, checksum: int) -> Frame:
        """The Frame for one Python frame of `pid`: from memory, else from the captured code object."""
        symbolizer = self._for_pid(pid)
        found = (
            symbolizer.lookup(code, lasti, checksum)
            if symbolizer is not None
            else "no supported CPython in the process"
        )
        if not isinstance(found, str):
            self.named["memory"] += 1
            return found
        captured = self.captured.get(pid, code, checksum)
        if captured is not None:
            self.named["captured"] += 1
            return captured.frame(lasti)
        self.stats[found] += 1
        return UNKNOWN_FRAME

    def register(self, process: PythonProcess) -> None:
        """Use what the caller already knows about a process (binary, bias) instead of rediscovering it."""
        entry = self._processes.get(process.pid)
        if entry is not None and entry.symbolizer is not None and entry.start_time == process.start_time:
            return
        self._replace(process.pid, process, process.start_time, time.monotonic())

    def forget(self, pid: int) -> None:
        """Drop everything about `pid` (call on process exit)."""
        entry = self._processes.pop(pid, None)
        if entry is not None and entry.symbolizer is not None:
            entry.symbolizer.mem.close()

    def _for_pid(self, pid: int) -> ProcessSymbolizer | None:
        now = time.monotonic()
        entry = self._processes.get(pid)
        if entry is not None and now - entry.checked_at < RECHECK_SECONDS:
            return entry.symbolizer
        start_time = process_start_time(pid)
        if entry is not None and entry.start_time == start_time:
            entry.checked_at = now
            return entry.symbolizer
        process = find_python(pid) if start_time is not None else None
        return self._replace(pid, process, start_time, now)

    def _replace(
        self, pid: int, process: PythonProcess | None, start_time: int | None, now: float
    ) -> ProcessSymbolizer | None:
        """Forget what is known of `pid` and symbolize it as `process` from now on."""
        self.forget(pid)
        symbolizer = ProcessSymbolizer(process, stats=self.stats) if process is not None else None
        self._processes[pid] = _Pid(symbolizer, start_time, now)
        return symbolizer
