"""Line-number tables of CPython code objects, decoded exactly as each version's PyCode_Addr2Line does.

A decoded table is a sorted list of (first byte offset, line or None) boundaries; `line_at` answers
PyCode_Addr2Line(code, byte_offset) bit for bit, None where CPython answers -1 (no line).
Tables come from untrusted memory: decoding is bounded by the table length and never raises.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from fleetprof.interpreters.python.layouts import LineTable

_NO_LINE_310 = -128
_KIND_NONE = 15
_KIND_NO_COLUMNS = 13
_KIND_LONG = 14
_KIND_ONE_LINE0 = 10


@dataclass(frozen=True, slots=True)
class LineRanges:
    """Line lookup for one code object: `starts[i]` (byte offset) begins a range with `lines[i]`."""

    firstlineno: int
    starts: tuple[int, ...]
    lines: tuple[int | None, ...]
    end: int  # byte offset after the last range; offsets past it have no line (None) for ranged formats
    bounded: bool  # False for co_lnotab, whose last line extends to the end of the code

    def line_at(self, byte_offset: int) -> int | None:
        """PyCode_Addr2Line(code, byte_offset): a negative offset gives co_firstlineno."""
        if byte_offset < 0:
            return self.firstlineno
        if self.bounded and byte_offset >= self.end:
            return None
        index = bisect.bisect_right(self.starts, byte_offset) - 1
        return self.firstlineno if index < 0 else self.lines[index]

    def ranges(self) -> list[tuple[int, int, int | None]]:
        """(start, end, line) like code.co_lines() (ranged formats)."""
        ends = (*self.starts[1:], self.end)
        return list(zip(self.starts, ends, self.lines, strict=True))


def decode(kind: LineTable, table: bytes, firstlineno: int) -> LineRanges:
    """Decode `table` (co_lnotab or co_linetable bytes) of the given format."""
    if kind is LineTable.LNOTAB:
        return _lnotab(table, firstlineno)
    if kind is LineTable.LINETABLE_310:
        return _linetable_310(table, firstlineno)
    return _locations(table, firstlineno)


def _lnotab(table: bytes, firstlineno: int) -> LineRanges:
    """3.8/3.9: `addr += d; if addr > q: break; line += l` as cumulative boundaries."""
    starts: list[int] = []
    lines: list[int | None] = []
    addr = 0
    line = firstlineno
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        delta = table[i + 1]
        line += delta - 256 if delta >= 128 else delta
        if starts and starts[-1] == addr:
            lines[-1] = line
        else:
            starts.append(addr)
            lines.append(line)
    return LineRanges(firstlineno, tuple(starts), tuple(lines), addr, bounded=False)


def _linetable_310(table: bytes, firstlineno: int) -> LineRanges:
    """3.10: (byte delta u8, line delta s8) pairs; -128 = no line; zero-length ranges are skipped."""
    starts: list[int] = []
    lines: list[int | None] = []
    end = 0
    line = firstlineno
    for i in range(0, len(table) - 1, 2):
        start = end
        end += table[i]
        delta = table[i + 1] - 256 if table[i + 1] >= 128 else table[i + 1]
        if delta != _NO_LINE_310:
            line += delta
        if end > start:
            starts.append(start)
            lines.append(None if delta == _NO_LINE_310 else line)
    return LineRanges(firstlineno, tuple(starts), tuple(lines), end if starts else 0, bounded=True)


def _varint(table: bytes, pos: int) -> tuple[int, int]:
    value = 0
    shift = 0
    while pos < len(table):
        byte = table[pos]
        pos += 1
        value |= (byte & 63) << shift
        shift += 6
        if not byte & 64 or shift > 60:
            break
    return value, pos


def _signed_varint(table: bytes, pos: int) -> tuple[int, int]:
    value, pos = _varint(table, pos)
    return (-(value >> 1) if value & 1 else value >> 1), pos


def _locations(table: bytes, firstlineno: int) -> LineRanges:
    """3.11+: location entries; first byte 1kkkklll (kind, length - 1 in code units)."""
    starts: list[int] = []
    lines: list[int | None] = []
    end = 0
    line = firstlineno
    pos = 0
    size = len(table)
    while pos < size:
        first = table[pos]
        kind = (first >> 3) & 15
        starts.append(end)
        end += ((first & 7) + 1) * 2
        if kind in (_KIND_NO_COLUMNS, _KIND_LONG):
            delta, _ = _signed_varint(table, pos + 1)
            line += delta
        elif _KIND_ONE_LINE0 <= kind < _KIND_NO_COLUMNS:
            line += kind - _KIND_ONE_LINE0
        lines.append(None if kind == _KIND_NONE else line)
        pos += 1
        while pos < size and not table[pos] & 128:
            pos += 1
    return LineRanges(firstlineno, tuple(starts), tuple(lines), end, bounded=True)
