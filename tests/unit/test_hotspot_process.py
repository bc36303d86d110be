"""A real JVM (tests/fixtures/java/HotLoop.java) read from outside: layout from its VMStructs, its code
heaps walked, nmethods named and checked against `jcmd PID Compiler.codelist`, inlined scopes checked
against the program's own methods. Needs root (another process's memory) and a JDK; skipped otherwise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleetprof.interpreters.engine import EngineMatch, find_engine
from fleetprof.interpreters.hotspot.discovery import HotSpotBinary, inspect_hotspot_binary, is_hotspot_name
from fleetprof.interpreters.hotspot.layouts import BLOB_NAME_NATIVE_NMETHOD, BLOB_NAME_NMETHOD, HotSpotLayout
from fleetprof.interpreters.hotspot.process import HotSpotProcess, blocks, code_range, layout_from_process
from fleetprof.interpreters.hotspot.symbolizer import (
    JVM_FRAME_COMPILED,
    JVM_FRAME_INTERPRETED,
    JVM_FRAME_STUB,
    HotSpotNamer,
)
from fleetprof.process.memory import ProcessMemory

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "java" / "HotLoop.java"
MAIN = "fleetprof.fixture.HotLoop"
PROGRAM = {f"{MAIN}.{name}" for name in ("leaf", "middle", "outer", "main", "lambda$main$0")}
CODELIST = re.compile(r"^(\d+) -?\d+ \d+ (\S+?)\(.*\)\S* \[(0x[0-9a-f]+), (0x[0-9a-f]+) - (0x[0-9a-f]+)\]$")


def _jdks() -> list[Path]:
    """JAVA_HOMEs to test: the one `java` on PATH belongs to, and Temurin 25 when installed."""
    homes = []
    java = shutil.which("java")
    if java:
        homes.append(Path(os.path.realpath(java)).parents[1])
    homes.append(Path("/usr/lib/jvm/temurin-25-jdk-amd64"))
    return [home for home in dict.fromkeys(homes) if (home / "bin" / "java").exists()]


@dataclass
class Jvm:
    """A running HotLoop and what the tests read of it."""

    home: Path
    pid: int
    binary: HotSpotBinary
    bias: int
    mem: ProcessMemory
    layout: HotSpotLayout


@pytest.fixture(scope="module")
def classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.geteuid() != 0:
        pytest.skip("reading another process's memory needs root")
    homes = _jdks()
    if not homes or not (homes[0] / "bin" / "javac").exists():
        pytest.skip("no JDK (java and javac) installed")
    out = tmp_path_factory.mktemp("hotloop")
    subprocess.run([str(homes[0] / "bin" / "javac"), "-d", str(out), str(FIXTURE)], check=True, timeout=60)
    return out


@pytest.fixture(scope="module", params=_jdks() or [None], ids=lambda home: home.name if home else "none")
def jvm(request: pytest.FixtureRequest, classes: Path) -> Iterator[Jvm]:
    home = request.param
    if home is None:
        pytest.skip("no JDK installed")
    proc = subprocess.Popen(
        [str(home / "bin" / "java"), "-Xss1m", "-cp", str(classes), MAIN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
        found = find_engine(
            proc.pid, is_hotspot_name, inspect_hotspot_binary, lambda b: isinstance(b, HotSpotBinary)
        )
        assert isinstance(found, EngineMatch), found
        mem = ProcessMemory(proc.pid)
        layout = layout_from_process(mem, found.bias, found.binary)
        assert isinstance(layout, HotSpotLayout), layout
        yield Jvm(home, proc.pid, found.binary, found.bias, mem, layout)
        mem.close()
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _codelist(jvm: Jvm) -> dict[int, tuple[str, int, int]]:
    """compile id -> (method name, blob address, code begin) from jcmd."""
    out = subprocess.run(
        [str(jvm.home / "bin" / "jcmd"), str(jvm.pid), "Compiler.codelist"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    found = {}
    for line in out.splitlines():
        match = CODELIST.match(line.strip())
        if match:
            found[int(match[1])] = (match[2], int(match[3], 16), int(match[4], 16))
    return found


def test_nmethods_match_codelist(jvm: Jvm) -> None:
    listed = _codelist(jvm)
    proc = HotSpotProcess(jvm.mem, jvm.bias, jvm.layout)
    heaps = proc.code_heaps()
    assert heaps and all(h.low < h.high for h in heaps)
    namer = HotSpotNamer(jvm.mem, jvm.layout)
    seen: dict[int, tuple[str, int]] = {}
    kinds = set()
    for heap in heaps:
        for blob in blocks(jvm.mem, heap, jvm.layout):
            name = proc.blob_name(blob)
            kinds.add(name)
            if name not in (BLOB_NAME_NMETHOD, BLOB_NAME_NATIVE_NMETHOD):
                continue
            info = namer.nmethod(blob)
            method = namer.method(info.method) if info else None
            assert info is not None and method is not None, hex(blob)
            seen[info.compile_id] = (method.function, blob)
            code = code_range(jvm.mem, blob, jvm.layout)
            assert code is not None and proc.find_blob(code[0]) == blob == proc.find_blob(code[1] - 1)
    assert "Interpreter" in kinds
    both = set(seen) & set(listed)
    assert len(both) >= 0.9 * len(listed) > 0  # a few may be compiled or flushed between the two reads
    for compile_id in both:
        assert seen[compile_id] == (listed[compile_id][0], listed[compile_id][1])
    assert {name for name, _ in seen.values()} >= {f"{MAIN}.leaf", f"{MAIN}.middle", f"{MAIN}.outer"}
    interpreter = next(
        b for h in heaps for b in blocks(jvm.mem, h, jvm.layout) if proc.blob_name(b) == "Interpreter"
    )
    assert namer.frames(interpreter, interpreter + 64, JVM_FRAME_STUB)[0].function == "[jvm: Interpreter]"


def test_inlined_scopes_name_program_methods(jvm: Jvm) -> None:
    proc = HotSpotProcess(jvm.mem, jvm.bias, jvm.layout)
    namer = HotSpotNamer(jvm.mem, jvm.layout)
    chains = []
    outer_method = 0
    for heap in proc.code_heaps() or []:
        for blob in blocks(jvm.mem, heap, jvm.layout):
            if proc.blob_name(blob) != BLOB_NAME_NMETHOD:
                continue
            info = namer.nmethod(blob)
            method = namer.method(info.method) if info else None
            if info is None or method is None or not method.function.startswith(MAIN):
                continue
            outer_method = info.method if method.function == f"{MAIN}.outer" else outer_method
            for pc_offset, _ in info.pcs:
                frames = namer.frames(blob, info.code_begin + pc_offset, JVM_FRAME_COMPILED)
                assert frames and frames[0].function == method.function and not frames[0].inlined
                if len(frames) > 1:
                    chains.append(frames)
    assert chains, "no inlining in HotLoop's nmethods"
    for frames in chains:
        assert all(f.inlined for f in frames[1:])
        for frame in frames:
            if frame.function.startswith(MAIN) and "$$Lambda" not in frame.function:
                assert frame.function in PROGRAM
                assert frame.file == "HotLoop.java" and frame.line > 0
    lines = FIXTURE.read_text().splitlines()
    first = next(i for i, text in enumerate(lines, 1) if "long sum = 0;" in text)  # outer's first statement
    assert outer_method
    (frame,) = namer.frames(outer_method, 0, JVM_FRAME_INTERPRETED)
    assert (frame.function, frame.file, frame.line, frame.start_line) == (
        f"{MAIN}.outer",
        "HotLoop.java",
        first,
        first,
    )
