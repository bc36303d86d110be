"""A real JVM (tests/fixtures/java/HotLoop.java) read from outside: layout from its VMStructs, its code
heaps walked, nmethods named and checked against `jcmd PID Compiler.codelist`, inlined scopes checked
against the program's own methods. Needs root (another process's memory) and a JDK; skipped otherwise."""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from fleetprof.interpreters.engine import EngineMatch, find_engine
from fleetprof.interpreters.hotspot.discovery import HotSpotBinary, inspect_hotspot_binary, is_hotspot_name
from fleetprof.interpreters.hotspot.layouts import (
    BLOB_NAME_NATIVE_NMETHOD,
    BLOB_NAME_NMETHOD,
    NAME_WORD_NATIVE_NMETHOD,
    NAME_WORD_NMETHOD,
    HotSpotLayout,
)
from fleetprof.interpreters.hotspot.process import HotSpotProcess, blocks, code_range, layout_from_process
from fleetprof.interpreters.hotspot.symbolizer import (
    JVM_AUX_TOP,
    JVM_FRAME_COMPILED,
    JVM_FRAME_INTERPRETED,
    JVM_FRAME_STUB,
    HotSpotNamer,
)
from fleetprof.process.memory import ProcessMemory
from fleetprof.profile.model import Frame

T = TypeVar("T")

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "java" / "HotLoop.java"
MAIN = "fleetprof.fixture.HotLoop"
PROGRAM = {
    f"{MAIN}.{n}"
    for n in ("leaf", "middle", "outer", "main", "hot", "spin", "lambda$main$0", "lambda$main$1")
}
JVM_FLAGS = [  # spin stays interpreted; compiled hot calls compiled outer
    "-XX:CompileCommand=quiet",
    f"-XX:CompileCommand=exclude,{MAIN}::spin",
    f"-XX:CompileCommand=dontinline,{MAIN}::outer",
]
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
        [str(home / "bin" / "java"), *JVM_FLAGS, "-cp", str(classes), MAIN],
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
            word = jvm.mem.u64(jvm.mem.u64(blob + jvm.layout.blob_name) or 0)
            assert word == (NAME_WORD_NMETHOD if name == BLOB_NAME_NMETHOD else NAME_WORD_NATIVE_NMETHOD)
            info = namer.nmethod(blob)
            method = namer.method(info.method) if info else None
            assert info is not None and method is not None, hex(blob)
            seen[info.compile_id] = (method.function, blob)
            code = code_range(jvm.mem, blob, jvm.layout)
            assert code is not None and proc.find_blob(code[0]) == blob == proc.find_blob(code[1] - 1)
            assert name != BLOB_NAME_NMETHOD or code[0] <= info.deopt_handler < code[1]
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


PTRACE_GETREGS, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 12, 17, 0x4206, 0x4207
WALL = 0x40000000
REGS = ("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi")
REGS += ("orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs")


def _thread(pid: int, name: str) -> int:
    """The id of the thread of `pid` called `name` (Java sets its threads' native names)."""
    for task in os.listdir(f"/proc/{pid}/task"):
        if Path(f"/proc/{pid}/task/{task}/comm").read_text().strip() == name:
            return int(task)
    raise AssertionError(f"no thread {name}")


def _registers(tid: int) -> dict[str, int]:
    """Stop thread `tid` (PTRACE_SEIZE + INTERRUPT), read its registers, let it go."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
    libc.ptrace.restype = ctypes.c_long
    assert libc.ptrace(PTRACE_SEIZE, tid, None, None) == 0, os.strerror(ctypes.get_errno())
    try:
        assert libc.ptrace(PTRACE_INTERRUPT, tid, None, None) == 0
        os.waitpid(tid, WALL)
        regs = (ctypes.c_ulonglong * len(REGS))()
        assert libc.ptrace(PTRACE_GETREGS, tid, None, ctypes.addressof(regs)) == 0
        return dict(zip(REGS, regs, strict=True))
    finally:
        libc.ptrace(PTRACE_DETACH, tid, None, None)


def _sample(jvm: Jvm, thread: str, accept: Callable[[dict[str, int]], T | None], tries: int = 200) -> T:
    """Stop `thread` until `accept` takes its registers (a sample landing in the code it wants)."""
    tid = _thread(jvm.pid, thread)
    for _ in range(tries):
        found = accept(_registers(tid))
        if found is not None:
            return found
        time.sleep(0.002)
    raise AssertionError(f"no usable sample of {thread} in {tries} tries")


def test_interpreted_frame_slots(jvm: Jvm) -> None:
    """fp[-3] is the Method*, r13 (fp[-8] once saved) the bcp; bci = bcp - (ConstMethod* + sizeof)."""
    proc = HotSpotProcess(jvm.mem, jvm.bias, jvm.layout)
    namer = HotSpotNamer(jvm.mem, jvm.layout)
    lay = jvm.layout

    def accept(regs: dict[str, int]) -> tuple[str, int] | None:
        blob = proc.find_blob(regs["rip"])
        if blob is None or proc.blob_name(blob) != "Interpreter":
            return None
        code = proc.interpreter()
        assert code is not None and code[0] <= regs["rip"] < code[1]
        fp = regs["rbp"]
        method = jvm.mem.u64(fp + lay.fp_method * 8)
        const = jvm.mem.u64(method + lay.method_const_method) if method else None
        bci = regs["r13"] - (const or 0) - lay.constmethod_size
        frames = namer.frames(method or 0, bci, JVM_FRAME_INTERPRETED) if const and 0 <= bci < 64 else None
        sender_sp = jvm.mem.u64(fp + lay.fp_sender_sp * 8)
        if not frames or not sender_sp or sender_sp <= fp:
            return None
        return frames[0].function, frames[0].line

    function, line = _sample(jvm, "fp-spin", accept)
    lines = FIXTURE.read_text().splitlines()
    body = range(next(i for i, t in enumerate(lines, 1) if "static void spin()" in t), len(lines))
    assert function == f"{MAIN}.spin" and line in body


def test_compiled_frame_and_caller(jvm: Jvm) -> None:
    """An interrupted pc in an nmethod names its scopes (JVM_AUX_TOP); one step with _frame_size finds
    the return address, whose PcDesc is exact, in a caller that is the program's too."""
    proc = HotSpotProcess(jvm.mem, jvm.bias, jvm.layout)
    namer = HotSpotNamer(jvm.mem, jvm.layout)
    lay = jvm.layout

    def accept(regs: dict[str, int]) -> tuple[tuple[Frame, ...], tuple[Frame, ...] | str] | None:
        pc, sp = regs["rip"], regs["rsp"]
        blob = proc.find_blob(pc)
        if blob is None or proc.blob_name(blob) != BLOB_NAME_NMETHOD:
            return None
        info = namer.nmethod(blob)
        head = jvm.mem.read(blob, 64)
        if info is None or head is None:
            return None
        width = lay.blob_frame_complete_width
        complete = int.from_bytes(head[lay.blob_frame_complete_offset :][:width], "little", signed=True)
        frame_size = struct.unpack_from("<i", head, lay.blob_frame_size)[0]
        if pc - info.code_begin <= complete:
            return None  # in the prologue: the frame is not built yet
        frames = namer.frames(blob, pc, JVM_FRAME_COMPILED | JVM_AUX_TOP)
        ret = jvm.mem.u64(sp + frame_size * 8 - 8)  # the return address is the frame's last word
        caller = proc.find_blob(ret or 0)
        if not frames or caller is None:
            return None
        if proc.blob_name(caller) != BLOB_NAME_NMETHOD:
            return frames, proc.blob_name(caller) or ""
        cinfo = namer.nmethod(caller)
        exact = cinfo is not None and any(off == ret - cinfo.code_begin for off, _ in cinfo.pcs)
        assert exact, "a return address has its own PcDesc"
        return frames, namer.frames(caller, ret, JVM_FRAME_COMPILED) or ()

    frames, caller = _sample(jvm, "fp-hot", accept)
    assert frames[0].function in PROGRAM and all(f.inlined for f in frames[1:])
    assert all(
        f.function in PROGRAM or "$$Lambda" in f.function or f.function.startswith("java.") for f in frames
    )
    if isinstance(caller, str):
        assert caller in (
            "Interpreter",
            "I2C/C2I adapters",
            "StubRoutines (1)",
            "StubRoutines (initialstubs)",
        )
    else:
        assert caller and caller[0].function in PROGRAM
