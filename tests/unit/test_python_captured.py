"""Code objects captured by BPF at sample time (struct py_code_record): decoding, lines from the captured
(possibly cut) line table, and the symbolizer's choice between process memory and the captured record."""

from __future__ import annotations

import sys
import types

import pytest

from fleetprof.interpreters.python.captured import TAIL_MARK, CapturedCodes, parse_record
from fleetprof.interpreters.python.procinfo import (
    PY_CODE_F_FILE_TAIL,
    PY_CODE_TABLE_MAX,
    PY_LASTI_NONE,
    PyCodeRecord,
)
from fleetprof.interpreters.python.symbolizer import UNKNOWN_FUNCTION, PythonSymbolizer
from fleetprof.profile.model import Frame, FrameKind

VERSION = (sys.version_info.major << 8) | sys.version_info.minor
PID, ADDR, CSUM = 4242, 0x7F0012345670, 0xC0FFEE


def _record(
    name: bytes,
    file: bytes,
    table: bytes,
    *,
    version: int = VERSION,
    firstlineno: int = 10,
    table_size: int | None = None,
    kind: int = 1,
    flags: int = 0,
    pid: int = PID,
) -> bytes:
    """A record as BPF sends it (the table cut to what BPF copies)."""
    rec = PyCodeRecord(code=ADDR, pid=pid, checksum=CSUM, firstlineno=firstlineno, version=version)
    rec.table_size = len(table) if table_size is None else table_size
    rec.name_len, rec.name_kind = len(name), kind
    rec.file_len, rec.file_kind = len(file), 1 if file else 0
    head = table[:PY_CODE_TABLE_MAX]
    rec.table_len = len(head)
    rec.flags = flags
    raw = bytearray(rec)
    for field, value in (("name", name), ("file", file), ("table", head)):
        offset = getattr(PyCodeRecord, field).offset
        raw[offset : offset + len(value)] = value
    return bytes(raw)


def _long_function(x: int) -> int:
    """Many lines, so its location table is long enough to cut."""
    total = 0
    for i in range(x):
        total += i
        total -= 1
        total *= 2
        total //= 3
        total += x
    if total > 10:
        total -= 5
        total //= 2
    return total


def _from_code(code: types.CodeType, cut: int | None = None) -> bytes:
    table = code.co_linetable if sys.version_info >= (3, 10) else code.co_lnotab
    head = table if cut is None else table[:cut]
    return _record(
        code.co_qualname.encode() if sys.version_info >= (3, 11) else code.co_name.encode(),
        code.co_filename.encode(),
        head,
        firstlineno=code.co_firstlineno,
        table_size=len(table),
    )


def _expected_lines(code: types.CodeType) -> dict[int, int]:
    """Code unit -> line as CPython answers it (co_lines), 0 for no line."""
    out = {}
    for start, end, line in code.co_lines():
        for offset in range(start, end, 2):
            out[offset // 2] = line or 0
    return out


def test_lines_from_a_whole_captured_table() -> None:
    code = _long_function.__code__
    parsed = parse_record(_from_code(code))
    assert parsed is not None
    key, captured = parsed
    assert key == (PID, ADDR, CSUM)
    assert (captured.qualname, captured.filename) == (code.co_qualname, code.co_filename)
    expected = _expected_lines(code)
    assert {unit: captured.line(unit) for unit in expected} == expected
    assert captured.line(PY_LASTI_NONE) == code.co_firstlineno
    frame = captured.frame(max(expected))
    assert (frame.function, frame.file, frame.line, frame.start_line) == (
        "_long_function",
        __file__,
        expected[max(expected)],
        code.co_firstlineno,
    )


def test_a_cut_table_gives_right_lines_or_none() -> None:
    """Past the captured head a line is unknown (0), never a wrong one; a cut entry is dropped."""
    code = _long_function.__code__
    expected = _expected_lines(code)
    cut = len(code.co_linetable) // 2 + 1  # likely inside an entry
    parsed = parse_record(_from_code(code, cut))
    assert parsed is not None
    captured = parsed[1]
    assert captured.truncated
    got = {unit: captured.line(unit) for unit in expected}
    known = {unit for unit, line in got.items() if line}
    assert known and len(known) < len(expected)
    assert all(got[unit] == expected[unit] for unit in known)
    assert all(got[unit] for unit in expected if unit * 2 < captured.lines.end and expected[unit])


def test_lnotab_of_38_and_39_cut_after_the_last_whole_pair() -> None:
    """co_lnotab (3.9): line deltas at byte offsets; past the last captured boundary the line is unknown."""
    table = bytes([2, 1, 4, 1, 6, 2, 9])  # the odd last byte is half a pair
    parsed = parse_record(_record(b"f", b"m.py", table, version=0x0309, firstlineno=5, table_size=12))
    assert parsed is not None
    captured = parsed[1]
    assert [captured.line(u) for u in range(7)] == [5, 6, 6, 7, 7, 7, 0]


def test_names_files_and_kinds() -> None:
    wide = "größe_函数".encode("utf-16-le")
    parsed = parse_record(_record(wide, b"lib/python3/site.py", b"", kind=2, flags=PY_CODE_F_FILE_TAIL))
    assert parsed is not None
    assert parsed[1].qualname == "größe_函数"
    assert parsed[1].filename == TAIL_MARK + "lib/python3/site.py"
    assert parse_record(_record(b"", b"x.py", b"")) is None  # nothing to name it by
    assert parse_record(b"\0" * 16) is None
    codes = CapturedCodes(capacity=2)
    codes.add_record(b"short")
    codes.add_record(_record(b"f", b"a.py", b""))
    assert (codes.received, codes.malformed, len(codes)) == (1, 1, 1)
    assert codes.get(PID, ADDR, CSUM) is not None and codes.get(PID, ADDR, CSUM + 1) is None
    codes.add_record(_record(b"g", b"b.py", b"", pid=7))
    codes.add_record(_record(b"h", b"c.py", b"", firstlineno=99))  # the same key: replaces f
    assert len(codes) == 2 and codes.get(PID, ADDR, CSUM).qualname == "h"
    codes.forget([PID])
    assert len(codes) == 1 and codes.get(7, ADDR, CSUM) is not None


class _FakeProcess:
    """A ProcessSymbolizer stand-in whose memory lookup answers `answer`."""

    def __init__(self, answer: Frame | str) -> None:
        self.answer = answer

    def lookup(self, code: int, lasti: int, checksum: int) -> Frame | str:
        return self.answer


@pytest.mark.parametrize("memory", ["readable", "checksum mismatch", "gone"])
def test_memory_first_then_the_captured_record(memory: str, monkeypatch: pytest.MonkeyPatch) -> None:
    symbolizer = PythonSymbolizer()
    from_memory = Frame(kind=FrameKind.PYTHON, function="from_memory", file="m.py", line=3)
    fake = {"readable": _FakeProcess(from_memory), "checksum mismatch": _FakeProcess("checksum mismatch")}
    monkeypatch.setattr(symbolizer, "_for_pid", lambda pid: fake.get(memory))
    code = _long_function.__code__
    unit, line = next((u, ln) for u, ln in _expected_lines(code).items() if ln > code.co_firstlineno)

    # No record yet: memory or nothing.
    first = symbolizer.symbolize(PID, ADDR, unit, CSUM)
    assert first.function == ("from_memory" if memory == "readable" else UNKNOWN_FUNCTION)

    symbolizer.captured.add_record(_from_code(code))
    frame = symbolizer.symbolize(PID, ADDR, unit, CSUM)
    if memory == "readable":
        assert frame is from_memory
        assert symbolizer.named == {"memory": 2}
    else:
        assert (frame.function, frame.line) == ("_long_function", line)
        assert symbolizer.named == {"captured": 1}
        reason = (
            "checksum mismatch" if memory == "checksum mismatch" else "no supported CPython in the process"
        )
        assert symbolizer.stats == {reason: 1}  # only the frame nothing named
    # Another checksum at the same address is another code object: not named by this record.
    assert symbolizer.symbolize(PID, ADDR, unit, CSUM + 1).function == (
        "from_memory" if memory == "readable" else UNKNOWN_FUNCTION
    )
