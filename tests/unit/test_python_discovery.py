"""Discovery of CPython in ELF files checked against nm and objdump; biases against live processes."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_python_support import (
    DEBIAN_LIBPYTHON,
    Interpreter,
    interpreter_params,
    parked_chain,
    pyenv_glob,
)

from fleetprof.interpreters.python.discovery import UnsupportedPython, inspect_python_binary
from fleetprof.interpreters.python.process import find_python


def _nm(path: Path) -> dict[str, tuple[int, int]]:
    """name -> (value, size) of defined symbols, .symtab when present else .dynsym."""
    out = subprocess.run(["nm", "-S", "--defined-only", str(path)], capture_output=True, text=True).stdout
    if not out.strip():
        out = subprocess.run(
            ["nm", "-D", "-S", "--defined-only", str(path)], capture_output=True, text=True
        ).stdout
    symbols = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            symbols[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return symbols


def _jumps_out_of(path: Path, start: int, end: int) -> set[int]:
    """Targets of direct jumps from [start, end) that leave it, from objdump's disassembly."""
    text = subprocess.run(
        [
            "objdump",
            "-d",
            "--no-show-raw-insn",
            f"--start-address={start}",
            f"--stop-address={end}",
            str(path),
        ],
        capture_output=True,
        text=True,
    ).stdout
    targets = {int(t, 16) for t in re.findall(r"^\s+[0-9a-f]+:\s+j\w+\s+([0-9a-f]+) <", text, re.MULTILINE)}
    return {t for t in targets if not start <= t < end}


def _version_of(executable: Path) -> tuple[int, int, int]:
    out = subprocess.run(
        [str(executable), "-c", "import sys; print(*sys.version_info[:3])"], capture_output=True, text=True
    )
    major, minor, micro = (int(v) for v in out.stdout.split())
    return major, minor, micro


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_discovery_matches_nm_and_objdump(interpreter: Interpreter) -> None:
    if shutil.which("nm") is None or shutil.which("objdump") is None:
        pytest.fail("binutils are not installed (make setup installs them)")
    path = interpreter.library or interpreter.executable
    binary = inspect_python_binary(path)
    assert binary is not None
    assert binary.version == _version_of(interpreter.executable)
    assert binary.version_source == ("Py_Version" if interpreter.minor >= 11 else "file name")
    symbols = _nm(path)
    assert binary.runtime_addr == symbols["_PyRuntime"][0]
    assert binary.code_type_addr == symbols["PyCode_Type"][0]
    hot = binary.eval_ranges[0]
    start, size = symbols["_PyEval_EvalFrameDefault"]
    assert (hot.start, hot.end) == (start, start + size)
    cold = binary.eval_ranges[1:]
    if "_PyEval_EvalFrameDefault.cold" in symbols:
        cold_start, cold_size = symbols["_PyEval_EvalFrameDefault.cold"]
        assert [(c.start, c.end) for c in cold] == [(cold_start, cold_start + cold_size)]
    jumps = _jumps_out_of(path, start, start + size)
    if jumps and not cold:
        pytest.fail(f"the eval loop jumps out to {sorted(jumps)[:3]} but no .cold range was found")
    for target in jumps:
        assert any(c.start <= target < c.end for c in cold), f"jump to {target:#x} leaves every eval range"


def test_debian_shared_libpython_and_its_static_twin_agree() -> None:
    if not DEBIAN_LIBPYTHON.exists():
        pytest.skip("no Debian libpython3.11")
    shared = inspect_python_binary(DEBIAN_LIBPYTHON)
    static = inspect_python_binary("/usr/bin/python3.11")
    assert shared is not None and static is not None
    assert shared.version == static.version
    assert shared.layout == static.layout
    assert len(static.eval_ranges) == 2  # the LTO build splits a .cold part off


@pytest.mark.parametrize("name", ["2.7", "3.6", "3.7"])
def test_old_cpython_is_recognised_and_refused(name: str) -> None:
    libraries = pyenv_glob(f"{name}.*/lib/libpython{name}*.so.1.0")
    if not libraries:
        pytest.skip(f"no CPython {name} on this machine")
    with pytest.raises(UnsupportedPython, match=f"CPython {name} is older than 3.8"):
        inspect_python_binary(libraries[0])


def test_files_that_are_not_cpython(tmp_path: Path) -> None:
    assert inspect_python_binary("/bin/ls") is None
    not_elf = tmp_path / "libpython3.12.so.1.0"
    not_elf.write_bytes(b"#!/bin/sh\n" * 100)
    assert inspect_python_binary(not_elf) is None
    truncated = tmp_path / "python3.12"
    truncated.write_bytes(Path("/bin/ls").read_bytes()[:200])
    assert inspect_python_binary(truncated) is None
    assert inspect_python_binary(tmp_path / "missing") is None
    launcher = pyenv_glob("3.12.*/bin/python3.12")
    if launcher:
        assert inspect_python_binary(launcher[0]) is None  # dynamically linked: CPython is in libpython


def test_results_are_cached_by_file_id() -> None:
    found = pyenv_glob("3.1*/lib/libpython3.1*.so.1.0")
    if not found:
        pytest.skip("no pyenv CPython")
    first = inspect_python_binary(found[0], file_id="cafe" * 8)
    assert inspect_python_binary("/bin/ls", file_id="cafe" * 8) is first


@pytest.mark.parametrize("interpreter", interpreter_params())
def test_find_python_in_a_live_process(interpreter: Interpreter) -> None:
    with parked_chain(interpreter) as child:
        process = find_python(child.pid)
        maps = Path(f"/proc/{child.pid}/maps").read_text().splitlines()
    assert process is not None
    path = str(interpreter.library or interpreter.executable)
    first = next(line for line in maps if line.endswith(path) and line.split()[2] == "00000000")
    mapped_at = int(first.split("-", 1)[0], 16)
    expected_bias = 0 if interpreter.library is None else mapped_at  # non-PIE static vs shared object
    assert process.bias == expected_bias
    assert process.binary.version[:2] == (3, interpreter.minor)
