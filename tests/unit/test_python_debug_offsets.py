"""_Py_DebugOffsets: a real 3.13 (file and live memory), a synthetic 3.14 built by the C compiler from the
documented layout, and every reason to reject one."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from test_python_support import FIXTURES, interpreters, parked_chain

from fleetprof.elf.view import ElfView
from fleetprof.interpreters.python.debug_offsets import (
    DebugOffsetsError,
    layout_from_debug_offsets,
    parse_debug_offsets,
    struct_size,
)
from fleetprof.interpreters.python.discovery import inspect_python_binary
from fleetprof.interpreters.python.layouts import NONE, LineTable
from fleetprof.interpreters.python.process import find_python
from fleetprof.interpreters.python.procinfo import PY_F_EXEC_TAGGED, PY_F_LASTI_PTR, PY_WALK_SHIM
from fleetprof.process.memory import ProcessMemory

V3140 = 0x030E00F0


def _python313():
    found = [i for i in interpreters() if i.minor == 13 and i.library is not None]
    if not found:
        pytest.skip("no CPython 3.13 on this machine")
    return found[0]


def _file_bytes(library: Path) -> bytes:
    with ElfView(str(library)) as image:
        data = image.read_vaddr(image.symbols(["_PyRuntime"])["_PyRuntime"].value, struct_size(13) or 0)
    assert data is not None
    return data


def _synthetic_314(tmp_path: Path, version: int = V3140, free_threaded: int = 0) -> tuple[bytes, list[int]]:
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (make setup installs it)")
    exe = tmp_path / "debug_offsets_314"
    source = FIXTURES / "debug_offsets_314.c"
    flags = [f"-DVERSION={version:#x}", f"-DFREE_THREADED={free_threaded}"]
    subprocess.run(["gcc", "-Wall", *flags, "-o", str(exe), str(source)], check=True, capture_output=True)
    hexdata, positions = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split(
        "\n"
    )[:2]
    return bytes.fromhex(hexdata), [int(v) for v in positions.split()]


def test_real_313_from_the_file_and_from_live_memory() -> None:
    python = _python313()
    from_file = parse_debug_offsets(_file_bytes(python.library), 13)
    assert from_file.version[:2] == (3, 13)
    assert not from_file.free_threaded
    layout = layout_from_debug_offsets(from_file)
    assert (layout.tstate_frame, layout.frame_entry, layout.interp_tstate_head) == (72, 70, 7344)
    assert layout.source == "_Py_DebugOffsets"
    with parked_chain(python) as child:
        process = find_python(child.pid)
        assert process is not None
        with ProcessMemory(child.pid) as mem:
            live = mem.read(process.runtime_addr, struct_size(13) or 0)
    assert live is not None
    assert parse_debug_offsets(live, 13) == from_file


def test_synthetic_314_parses_from_the_documented_layout(tmp_path: Path) -> None:
    data, (size, interpreters_head_at, threads_head_at, current_frame_at) = _synthetic_314(tmp_path)
    assert size == struct_size(14) == len(data) == 760
    assert (interpreters_head_at, threads_head_at, current_frame_at) == (40, 72, 208)
    offsets = parse_debug_offsets(data, 14)
    assert offsets.version == (3, 14, 0)
    assert offsets.get("interpreter_state", "threads_main") == 7352
    assert offsets.get("debugger_support", "debugger_script_path_size") == 512
    layout = layout_from_debug_offsets(offsets)
    assert layout.minor == 14
    assert (layout.runtime_interp_head, layout.interp_tstate_head, layout.tstate_frame) == (808, 7344, 72)
    assert (layout.frame_code, layout.frame_lasti, layout.frame_entry, layout.code_adaptive) == (
        0,
        56,
        74,
        208,
    )
    assert layout.cframe_current_frame == NONE
    assert (layout.unicode_ascii_size, layout.unicode_compact_size) == (40, 56)
    sem = layout.semantics
    assert sem.walk_kind == PY_WALK_SHIM and sem.owner_shim_min == 3
    assert sem.flags & PY_F_EXEC_TAGGED and sem.flags & PY_F_LASTI_PTR
    assert sem.line_table is LineTable.LOCATIONS


def _patched(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<Q", value) + data[offset + 8 :]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: b"xdebugpz" + d[8:], "cookie"),
        (lambda d: d[:16], "only 16 bytes"),
        (lambda d: _patched(d, 8, 0x030F00F0), "unknown _Py_DebugOffsets layout of 3.15.0"),
        (lambda d: _patched(d, 8, 0x030E00B2), "pre-release"),
        (lambda d: _patched(d, 16, 7), "free_threaded flag is 7"),
        (lambda d: d[:700], "760 bytes"),
        (lambda d: _patched(d, 208, 4000), "thread_state.current_frame = 4000 is outside"),
        (lambda d: _patched(d, 24, 0), "implausible sizeof runtime_state"),
    ],
)
def test_bad_314_structs_are_rejected_with_a_reason(tmp_path: Path, mutate, reason: str) -> None:
    data, _ = _synthetic_314(tmp_path)
    with pytest.raises(DebugOffsetsError, match=reason.replace(".", r"\.")):
        parse_debug_offsets(mutate(data), 14 if "3.15" not in reason else None)


def test_free_threaded_and_mismatched_builds_are_rejected(tmp_path: Path) -> None:
    data, _ = _synthetic_314(tmp_path, free_threaded=1)
    with pytest.raises(DebugOffsetsError, match=r"free-threaded CPython 3\.14 is not supported"):
        layout_from_debug_offsets(parse_debug_offsets(data, 14))
    with pytest.raises(DebugOffsetsError, match=r"says 3\.14\.0 but the binary is 3\.13"):
        parse_debug_offsets(data, 13)
    python = _python313()
    free_313 = _patched(_file_bytes(python.library), 16, 1)
    with pytest.raises(DebugOffsetsError, match=r"free-threaded CPython 3\.13"):
        layout_from_debug_offsets(parse_debug_offsets(free_313, 13))


def test_discovery_of_313_uses_the_debug_offsets() -> None:
    binary = inspect_python_binary(_python313().library)
    assert binary is not None
    assert binary.layout.source == "_Py_DebugOffsets"
    assert binary.version[:2] == (3, 13)
