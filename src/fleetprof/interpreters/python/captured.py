"""Code objects as BPF captured them at sample time (struct py_code_record): names Python frames whose code
object or process is gone by the time userspace looks.

BPF sends one record per (process, code object, checksum), the first time its walker emits that object:
co_qualname, co_filename (its tail when long) and the head of the line table. Records are kept in a bounded
LRU keyed like the frames that refer to them; a frame's line is computed from the captured table with the
same decoders as memory reads use, and is unknown (0) past the captured part of a truncated table.
"""

from __future__ import annotations

import ctypes
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from fleetprof.interpreters.python.layouts import SEMANTICS, LineTable
from fleetprof.interpreters.python.linetable import LineRanges, decode
from fleetprof.interpreters.python.procinfo import PY_CODE_F_FILE_TAIL, PY_LASTI_NONE, PyCodeRecord
from fleetprof.profile.model import Frame, FrameKind

RECORD_SIZE = ctypes.sizeof(PyCodeRecord)
CAPACITY = 1 << 15  # records kept (under 1 KiB each; a table is decoded when a frame first needs it)
TAIL_MARK = "..."  # before a file name whose head BPF cut off
_ENCODINGS = {1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}

CodeKey = tuple[int, int, int]  # pid, code object address, checksum


def _line_format(version: int) -> LineTable:
    """The line-table format of CPython `version` (major << 8 | minor)."""
    minor = version & 0xFF
    semantics = SEMANTICS.get((minor, False))
    if semantics is not None:
        return semantics.line_table
    return LineTable.LOCATIONS if minor >= 11 else LineTable.LNOTAB


def _whole_entries(kind: LineTable, table: bytes) -> bytes:
    """The complete entries at the head of a cut line table (a cut entry would decode to a wrong line)."""
    if kind is LineTable.LOCATIONS:
        starts = [i for i, byte in enumerate(table) if byte & 0x80]
        return table[: starts[-1]] if starts else b""
    return table[: len(table) & ~1]


@dataclass(slots=True)
class CapturedCode:
    """One captured code object: its names, first line and (the head of) its line table."""

    qualname: str
    filename: str
    firstlineno: int
    line_format: LineTable
    table: bytes  # whole entries only
    truncated: bool  # the table is only the head of the code object's: offsets past it have no line
    frames: dict[int, Frame] = field(default_factory=dict)
    _lines: LineRanges | None = None

    @property
    def lines(self) -> LineRanges:
        """The decoded line table (decoded on first use: most records are never needed)."""
        if self._lines is None:
            self._lines = decode(self.line_format, self.table, self.firstlineno)
        return self._lines

    def line(self, lasti: int) -> int:
        """The line of instruction `lasti` (code units), 0 when unknown."""
        if lasti == PY_LASTI_NONE:
            return self.firstlineno
        offset = lasti * 2
        lines = self.lines
        if self.truncated and offset >= lines.end:
            return 0
        line = lines.line_at(offset)
        return line if line is not None and line > 0 else 0

    def frame(self, lasti: int) -> Frame:
        """The Frame of this code object at instruction `lasti`."""
        line = self.line(lasti)
        found = self.frames.get(line)
        if found is None:
            found = self.frames[line] = Frame(
                kind=FrameKind.PYTHON,
                function=self.qualname,
                file=self.filename,
                line=line,
                start_line=self.firstlineno,
            )
        return found


def _text(data: bytes, length: int, kind: int) -> str | None:
    codec = _ENCODINGS.get(kind)
    if codec is None or length > len(data) or length % kind:
        return None
    return data[:length].decode(codec, errors="replace")


def _field(data: bytes, name: str, length: int) -> bytes:
    """The first `length` bytes of a record's char array (ctypes would stop at a NUL), within the array."""
    descriptor = getattr(PyCodeRecord, name)
    return bytes(data[descriptor.offset : descriptor.offset + min(length, descriptor.size)])


def parse_record(data: bytes) -> tuple[CodeKey, CapturedCode] | None:
    """Decode one `struct py_code_record`; None when it is short or names nothing."""
    if len(data) < RECORD_SIZE:
        return None
    rec = PyCodeRecord.from_buffer_copy(data)
    name = _text(_field(data, "name", rec.name_len), rec.name_len, rec.name_kind)
    if not name:
        return None
    filename = _text(_field(data, "file", rec.file_len), rec.file_len, rec.file_kind) or ""
    if filename and rec.flags & PY_CODE_F_FILE_TAIL:
        filename = TAIL_MARK + filename
    kind = _line_format(rec.version)
    table = _field(data, "table", rec.table_len)
    truncated = len(table) < rec.table_size
    if truncated:
        table = _whole_entries(kind, table)
    code = CapturedCode(name, filename, rec.firstlineno, kind, table, truncated)
    return (rec.pid, rec.code, rec.checksum), code


class CapturedCodes:
    """The captured code objects of every process, least recently used dropped first past `capacity`;
    the newest record wins for a reused key."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = max(1, capacity)
        self._codes: OrderedDict[CodeKey, CapturedCode] = OrderedDict()
        self.received = 0
        self.malformed = 0

    def add_record(self, data: bytes) -> None:
        """Store one record from the BPF `py_codes` ring."""
        parsed = parse_record(data)
        if parsed is None:
            self.malformed += 1
            return
        self.received += 1
        key, code = parsed
        self._codes[key] = code
        self._codes.move_to_end(key)
        while len(self._codes) > self._capacity:
            self._codes.popitem(last=False)

    def get(self, pid: int, code: int, checksum: int) -> CapturedCode | None:
        """The captured code object, None when BPF sent none."""
        key = (pid, code, checksum)
        found = self._codes.get(key)
        if found is not None:
            self._codes.move_to_end(key)
        return found

    def forget(self, pids: Iterable[int]) -> None:
        """Drop the records of processes gone for good."""
        gone = set(pids)
        for key in [k for k in self._codes if k[0] in gone]:
            del self._codes[key]

    def __len__(self) -> int:
        return len(self._codes)
