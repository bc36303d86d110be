"""Every offset fleetprof uses, checked against the DWARF of each libpython on the machine, and the C
header checked against its Python mirror (layout and checksum)."""

from __future__ import annotations

import ctypes
import importlib.util
import random
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest
from test_python_support import Interpreter, interpreter_params

from fleetprof.elf.view import ElfView
from fleetprof.interpreters.python import procinfo
from fleetprof.interpreters.python.debug_offsets import (
    layout_from_debug_offsets,
    parse_debug_offsets,
    struct_size,
)
from fleetprof.interpreters.python.discovery import inspect_python_binary
from fleetprof.interpreters.python.layouts import NONE, SEMANTICS, STATE_BITS, table_layout
from fleetprof.interpreters.python.process import proc_info
from fleetprof.interpreters.python.procinfo import (
    PyCodeKey,
    PyCodeRecord,
    PyFrameRecord,
    PyProcInfo,
    code_checksum,
)

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "src" / "fleetprof" / "interpreters" / "python" / "python_offsets.h"
TOOL = ROOT / "tools" / "python_offsets_dwarf.py"
_NOT_OFFSETS = {"minor", "free_threaded", "source", "semantics"}


def _dwarf_tool():
    spec = importlib.util.spec_from_file_location("python_offsets_dwarf", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_layout_matches_dwarf(interpreter: Interpreter) -> None:
    if interpreter.library is None:
        pytest.skip("statically linked and stripped: no DWARF (covered by the walker tests)")
    if shutil.which("gdb") is None:
        pytest.fail("gdb is not installed (make setup installs it)")
    dwarf = _dwarf_tool().dwarf_offsets(str(interpreter.library), interpreter.minor)
    layout = table_layout(interpreter.minor)
    if layout is None:  # 3.13+: the layout comes from the file's own _Py_DebugOffsets
        with ElfView(str(interpreter.library)) as image:
            runtime = image.symbols(["_PyRuntime"])["_PyRuntime"].value
            data = image.read_vaddr(runtime, struct_size(interpreter.minor) or 0)
        assert data is not None
        layout = layout_from_debug_offsets(parse_debug_offsets(data, interpreter.minor))
    checked = set()
    for field in fields(layout):
        if field.name in _NOT_OFFSETS:
            continue
        value = getattr(layout, field.name)
        if value == NONE:
            assert field.name not in dwarf, f"3.{interpreter.minor} has {field.name}"
        else:
            assert dwarf.get(field.name) == value, f"3.{interpreter.minor} {field.name}"
            checked.add(field.name)
    if "owner_shim_min" in dwarf:
        assert layout.semantics.owner_shim_min == dwarf["owner_shim_min"]
    assert len(checked) >= 25


def _compile(tmp_path: Path, body: str) -> list[str]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (make setup installs it)")
    src = tmp_path / "probe.c"
    src.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <linux/types.h>\n"
        f'#include "{HEADER}"\nint main(void) {{\n{body}\nreturn 0; }}\n'
    )
    exe = tmp_path / "probe"
    subprocess.run(["gcc", "-Wall", "-Werror", "-o", str(exe), str(src)], check=True, capture_output=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()


@pytest.mark.parametrize(
    ("name", "mirror"),
    [
        ("py_proc_info", PyProcInfo),
        ("py_frame_record", PyFrameRecord),
        ("py_code_record", PyCodeRecord),
        ("py_code_key", PyCodeKey),
    ],
)
def test_header_matches_python_mirror(tmp_path: Path, name: str, mirror: type[ctypes.Structure]) -> None:
    lines = [f'printf("%zu\\n", sizeof(struct {name}));']
    lines += [f'printf("%zu\\n", offsetof(struct {name}, {f[0]}));' for f in mirror._fields_]
    out = [int(v) for v in _compile(tmp_path, "\n".join(lines))]
    assert out[0] == ctypes.sizeof(mirror)
    assert out[1:] == [getattr(mirror, f[0]).offset for f in mirror._fields_]
    assert ctypes.sizeof(PyFrameRecord) == 16
    assert ctypes.sizeof(PyProcInfo) == 80
    assert ctypes.sizeof(PyCodeRecord) == 808
    assert ctypes.sizeof(PyCodeKey) == 24


def test_string_state_bits_match_the_layouts() -> None:
    """BPF decodes str objects with the PY_STATE_* shifts; the layouts name the same bits."""
    shifts = {
        "unicode_kind_bit": procinfo.PY_STATE_KIND_SHIFT,
        "unicode_compact_bit": procinfo.PY_STATE_COMPACT_SHIFT,
        "unicode_ascii_bit": procinfo.PY_STATE_ASCII_SHIFT,
    }
    assert shifts == STATE_BITS


def test_header_constants_match_python(tmp_path: Path) -> None:
    names = [
        n
        for n in dir(procinfo)
        if n.startswith(("PY_F_", "PY_WALK_", "PY_CSUM_", "PY_OFF_", "PY_LASTI_", "PY_STATE_", "PY_CODE_"))
    ]
    out = _compile(tmp_path, "\n".join(f'printf("%llu\\n", (unsigned long long){n});' for n in names))
    assert [int(v) for v in out] == [getattr(procinfo, n) for n in names]


def test_checksum_matches_c(tmp_path: Path) -> None:
    rng = random.Random(4)
    cases = [(1, 0, 0, 0), (0xFFFFFFFF, 7, (1 << 64) - 1, 0x7F00DEADBEEF)]
    cases += [
        (rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(64), rng.getrandbits(64))
        for _ in range(50)
    ]
    body = "\n".join(
        f'printf("%u\\n", py_code_checksum({a}u, {b}u, {c}ull, {d}ull));' for a, b, c, d in cases
    )
    assert [int(v) for v in _compile(tmp_path, body)] == [code_checksum(*case) for case in cases]


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_proc_info_mirrors_the_layout(interpreter: Interpreter) -> None:
    binary = inspect_python_binary(interpreter.library or interpreter.executable)
    assert binary is not None
    info = proc_info(binary, 0x1000)
    layout = binary.layout
    assert info.runtime_addr == binary.runtime_addr + 0x1000
    assert info.version == 0x300 | interpreter.minor
    assert info.walk_kind == SEMANTICS[(interpreter.minor, False)].walk_kind
    for name in (
        "tstate_frame",
        "frame_previous",
        "frame_code",
        "frame_lasti",
        "code_firstlineno",
        "code_name",
        "code_linetable",
        "var_ob_size",
        "bytes_sval",
        "unicode_length",
        "unicode_state",
        "unicode_ascii_size",
        "unicode_compact_size",
    ):
        assert getattr(info, name) == getattr(layout, name)
    qualname = layout.code_qualname if layout.code_qualname != NONE else layout.code_name
    assert info.code_qualname == qualname
    assert (info.tstate_native_tid == procinfo.PY_OFF_NONE) == (interpreter.minor < 11)
    assert (info.frame_entry == procinfo.PY_OFF_NONE) == (interpreter.minor < 11)
