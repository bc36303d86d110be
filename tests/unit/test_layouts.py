"""The C headers are the one source of shared layouts; their Python mirrors must agree byte for byte."""

from __future__ import annotations

import ctypes
import re
import subprocess
from pathlib import Path

import pytest

from fleetprof.tracer import layout

SRC = Path(__file__).resolve().parents[2] / "src" / "fleetprof"
SAMPLE_H = SRC / "tracer" / "bpf" / "sample.h"

STRUCTS = {
    "frame": layout.Frame,
    "sample_header": layout.SampleHeader,
    "sample": layout.Sample,
    "mapping_key": layout.MappingKey,
    "mapping_info": layout.MappingInfo,
    "file_table": layout.FileTable,
    "interp_ranges": layout.InterpRanges,
    "pid_event": layout.PidEvent,
    "sampler_config": layout.SamplerConfig,
}


def header_defines(path: Path) -> dict[str, int]:
    """Integer #defines of a header (values may refer to earlier names)."""
    out: dict[str, int] = {}
    for name, expr in re.findall(r"^#define\s+([A-Z_0-9]+)\s+(.+?)\s*(?:/\*.*)?$", path.read_text(), re.M):
        try:
            out[name] = int(eval(expr, {}, dict(out)))
        except Exception:
            continue
    return out


def c_layout(
    tmp_path: Path, header: Path, structs: dict[str, type[ctypes.Structure]], prelude: str = ""
) -> dict:
    """Compile a program that prints sizeof and every field offset of `structs` as declared in `header`."""
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        "#include <linux/types.h>",
        prelude,
        f'#include "{header}"',
        "int main(void) {",
    ]
    for name, cls in structs.items():
        lines.append(f'printf("{name} size %zu\\n", sizeof(struct {name}));')
        for field in cls._fields_:
            lines.append(f'printf("{name} {field[0]} %zu\\n", offsetof(struct {name}, {field[0]}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-o", str(exe), str(src)], check=True, capture_output=True)
    out: dict = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        struct_name, field, value = line.split()
        out[(struct_name, field)] = int(value)
    return out


def test_sample_h_structs_match_python(tmp_path: Path) -> None:
    got = c_layout(tmp_path, SAMPLE_H, STRUCTS)
    for name, cls in STRUCTS.items():
        assert got[(name, "size")] == ctypes.sizeof(cls), name
        for field in cls._fields_:
            assert got[(name, field[0])] == getattr(cls, field[0]).offset, (name, field[0])


def test_fast_decoders_match_structs() -> None:
    assert ctypes.sizeof(layout.SampleHeader) == layout.HEADER_SIZE
    assert ctypes.sizeof(layout.Frame) == layout.FRAME_SIZE
    assert layout.EVENT_STRUCT.size == ctypes.sizeof(layout.PidEvent)
    assert layout.MAPPING_KEY_STRUCT.size == ctypes.sizeof(layout.MappingKey)
    assert layout.MAPPING_INFO_STRUCT.size == ctypes.sizeof(layout.MappingInfo)


@pytest.mark.parametrize("name", sorted(header_defines(SAMPLE_H)))
def test_sample_h_constants_match_python(name: str) -> None:
    if name.startswith("FLEETPROF_"):
        return
    assert getattr(layout, name) == header_defines(SAMPLE_H)[name]


UNWIND_H = SRC / "nativeunwind" / "unwind_table.h"


def test_unwind_table_h_structs_match_python(tmp_path: Path) -> None:
    from fleetprof.nativeunwind import table

    structs = {"unwind_rule": table.UnwindRule, "unwind_row": table.UnwindRow}
    got = c_layout(tmp_path, UNWIND_H, structs)
    for name, cls in structs.items():
        assert got[(name, "size")] == ctypes.sizeof(cls), name
        for field in cls._fields_:
            assert got[(name, field[0])] == getattr(cls, field[0]).offset, (name, field[0])
    assert table.RULE_STRUCT.size == ctypes.sizeof(table.UnwindRule)
    assert table.ROW_STRUCT.size == ctypes.sizeof(table.UnwindRow)


@pytest.mark.parametrize("name", sorted(header_defines(UNWIND_H)))
def test_unwind_table_h_constants_match_python(name: str) -> None:
    from fleetprof.nativeunwind import table

    assert getattr(table, name) == header_defines(UNWIND_H)[name]
