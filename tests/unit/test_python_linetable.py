"""Line-table decoders against each interpreter's own PyCode_Addr2Line and co_lines(), and on garbage."""

from __future__ import annotations

import json
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_python_support import FIXTURES, Interpreter, interpreter_params

from fleetprof.interpreters.python.layouts import SEMANTICS, LineTable
from fleetprof.interpreters.python.linetable import decode


def _merged(ranges: list) -> list[tuple[int, int, int | None]]:
    """Adjacent ranges with the same line joined (3.12+ co_lines() joins them, 3.10/3.11 do not)."""
    out: list[tuple[int, int, int | None]] = []
    for start, end, line in ranges:
        if out and out[-1][2] == line and out[-1][1] == start:
            out[-1] = (out[-1][0], end, line)
        else:
            out.append((start, end, line))
    return out


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_decoder_matches_the_interpreter_bit_for_bit(interpreter: Interpreter) -> None:
    out = subprocess.run(
        [str(interpreter.executable), str(FIXTURES / "dump_lines.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    truth = json.loads(out)
    kind = SEMANTICS[(interpreter.minor, False)].line_table
    assert len(truth["codes"]) > 200
    offsets = 0
    for code in truth["codes"]:
        lines = decode(kind, bytes.fromhex(code["table"]), code["firstlineno"])
        mine = [lines.line_at(offset) for offset in range(-2, code["code_bytes"], 2)]
        expected = [None if line == -1 else line for line in code["lines"]]
        assert mine == expected, code["name"]
        offsets += len(expected)
        if "co_lines" in code:
            assert _merged(lines.ranges()) == _merged([tuple(r) for r in code["co_lines"]]), code["name"]
    assert offsets > 10000


def test_no_location_entries_do_not_change_the_running_line() -> None:
    # 3.11+: "one line, +1" for 2 units; "no location" for 1 unit; "short form" for 1 unit (same line).
    table = bytes([0x80 | (11 << 3) | 1, 0, 0x80 | (15 << 3) | 0, 0x80 | (0 << 3) | 0, 0])
    lines = decode(LineTable.LOCATIONS, table, 10)
    assert [lines.line_at(b) for b in range(0, 8, 2)] == [11, 11, None, 11]
    assert lines.line_at(8) is None  # past the table
    assert lines.line_at(-2) == 10


def test_310_no_line_marker_and_zero_length_entries() -> None:
    table = bytes([0, 3, 4, 0x80, 6, 1])  # zero-length range (line +3), 4 bytes no line, 6 bytes line +1
    lines = decode(LineTable.LINETABLE_310, table, 5)
    assert [lines.line_at(b) for b in range(0, 12, 2)] == [None, None, 9, 9, 9, None]


def test_lnotab_large_and_negative_deltas() -> None:
    table = bytes([0, 127, 0, 127, 6, 0xFE, 10, 1])  # +254 at 0, then -2 at 6, +1 at 16
    lines = decode(LineTable.LNOTAB, table, 1)
    assert [lines.line_at(b) for b in (0, 4, 6, 14, 16, 400)] == [255, 255, 253, 253, 254, 254]


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(LineTable)), table=st.binary(max_size=300), first=st.integers(-5, 1 << 20))
def test_garbage_tables_decode_without_raising(kind: LineTable, table: bytes, first: int) -> None:
    lines = decode(kind, table, first)
    for offset in range(-2, 700, 14):
        line = lines.line_at(offset)
        assert line is None or isinstance(line, int)
