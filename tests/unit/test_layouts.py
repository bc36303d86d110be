"""The C headers are the one source of shared layouts; their Python mirrors must agree byte for byte, and
every constant a header #defines must exist in its mirror with the same value."""

from __future__ import annotations

import ctypes
import re
from pathlib import Path
from types import ModuleType

import pytest
from cprobe import run_c

from fleetprof.interpreters.python import procinfo
from fleetprof.nativeunwind import table
from fleetprof.tracer import layout

SRC = Path(__file__).resolve().parents[2] / "src" / "fleetprof"
SAMPLE_H = SRC / "tracer" / "bpf" / "sample.h"
UNWIND_H = SRC / "nativeunwind" / "unwind_table.h"
PYTHON_H = SRC / "interpreters" / "python" / "python_offsets.h"
MIRRORS: dict[Path, ModuleType] = {SAMPLE_H: layout, UNWIND_H: table, PYTHON_H: procinfo}

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
    "inode_key": layout.InodeKey,
    "inode_info": layout.InodeInfo,
    "vma_cache_entry": layout.VmaCacheEntry,
    "vma_cache": layout.VmaCache,
    "snapshot_regs": layout.SnapshotRegs,
    "stack_snapshot": layout.StackSnapshot,
}

# An object-like macro with a value: `#define NAME value` (a function-like macro has `(` right after its
# name; an include guard has no value). Continuation lines count as a value.
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)[ \t]+\S", re.M)


def defined_names(header: Path) -> list[str]:
    """Names of the object-like macros with a value that `header` itself defines, in order."""
    return _DEFINE.findall(header.read_text())


def c_defines(tmp_path: Path, header: Path) -> dict[str, int]:
    """Every constant `header` defines, evaluated by the C compiler (expressions, suffixes and all)."""
    names = defined_names(header)
    body = [f'printf("{name} %lld\\n", (long long)({name}));' for name in names]
    values = dict(line.split() for line in run_c(tmp_path, header, body))
    return {name: int(value) for name, value in values.items()}


def c_layout(tmp_path: Path, header: Path, structs: dict[str, type[ctypes.Structure]]) -> dict:
    """sizeof and every field offset of `structs` as declared in `header`."""
    body = []
    for name, cls in structs.items():
        body.append(f'printf("{name} size %zu\\n", sizeof(struct {name}));')
        for field in cls._fields_:
            body.append(f'printf("{name} {field[0]} %zu\\n", offsetof(struct {name}, {field[0]}));')
    out: dict = {}
    for line in run_c(tmp_path, header, body):
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
    assert layout.INODE_KEY_STRUCT.size == ctypes.sizeof(layout.InodeKey)
    assert layout.INODE_INFO_STRUCT.size == ctypes.sizeof(layout.InodeInfo)
    assert layout.SNAPSHOT_REGS_STRUCT.size == ctypes.sizeof(layout.SnapshotRegs)


def test_unwind_table_h_structs_match_python(tmp_path: Path) -> None:
    structs = {"unwind_rule": table.UnwindRule, "unwind_row": table.UnwindRow}
    got = c_layout(tmp_path, UNWIND_H, structs)
    for name, cls in structs.items():
        assert got[(name, "size")] == ctypes.sizeof(cls), name
        for field in cls._fields_:
            assert got[(name, field[0])] == getattr(cls, field[0]).offset, (name, field[0])
    assert table.RULE_STRUCT.size == ctypes.sizeof(table.UnwindRule)
    assert table.ROW_STRUCT.size == ctypes.sizeof(table.UnwindRow)


@pytest.mark.parametrize("header", list(MIRRORS), ids=lambda h: h.name)
def test_every_define_is_mirrored(tmp_path: Path, header: Path) -> None:
    """Each constant of the header has a twin of the same name and value in its Python mirror."""
    mirror = MIRRORS[header]
    defines = c_defines(tmp_path, header)
    assert defines, f"no constants found in {header}"
    missing = sorted(name for name in defines if not hasattr(mirror, name))
    assert not missing, f"{mirror.__name__} lacks {missing}"
    wrong = {
        name: (value, getattr(mirror, name))
        for name, value in defines.items()
        if getattr(mirror, name) != value
    }
    assert not wrong, f"{header.name} vs {mirror.__name__} (C, Python): {wrong}"


def test_define_parser_sees_every_form(tmp_path: Path) -> None:
    """Expressions, suffixes, trailing and multi-line comments, continuation lines and indented directives
    are all read; include guards and function-like macros are not constants."""
    header = tmp_path / "probe.h"
    header.write_text(
        "#ifndef PROBE_H\n#define PROBE_H\n"
        "#define A 3 /* a comment\n   on two lines */\n"
        "#define B (A * 2)  // twice A\n"
        "#define C 0xffffffffu\n"
        "  #  define D \\\n    7\n"
        "#define F(x) ((x) + 1)\n"
        "#define MAX_FRAMES 1024  /* the one the old regex never compared */\n"
        "#endif\n"
    )
    assert defined_names(header) == ["A", "B", "C", "D", "MAX_FRAMES"]
    assert c_defines(tmp_path, header) == {"A": 3, "B": 6, "C": 0xFFFFFFFF, "D": 7, "MAX_FRAMES": 1024}
