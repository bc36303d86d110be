"""The Ruby reference walker on a live ruby (a known chain parked in IO#gets, or spinning in String#* and
stopped), the thread-local route to the execution context, discovery's one-line reasons, and the walk's
guards on fake memory."""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from interp_memory import FakeMemory, RecordingMemory, wait_blocked_on_stdin

from fleetprof.interpreters.ruby.discovery import (
    RubyBinary,
    RubyUnsupported,
    inspect_ruby_binary,
    is_ruby_name,
)
from fleetprof.interpreters.ruby.layouts import (
    VM_ENV_FLAG_LOCAL,
    VM_FRAME_FLAG_CFRAME,
    VM_FRAME_MAGIC_DUMMY,
    layout_for,
)
from fleetprof.interpreters.ruby.process import RubyProcess, find_ruby
from fleetprof.interpreters.ruby.symbolizer import RUNTIME
from fleetprof.interpreters.ruby.walker import RubyStack, walk_ec, walk_pid, walk_process
from fleetprof.process.memory import ProcessMemory
from fleetprof.profile.model import FrameKind

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ruby"
CHAIN, LIB, THREADS = FIXTURES / "chain.rb", FIXTURES / "lib.rb", FIXTURES / "threads.rb"
CAPTURE = FIXTURES / "captured_park.json"
RUBY = shutil.which("ruby3.1") or shutil.which("ruby")

JIT_MODES = {
    "none": (),
    "yjit": ("--yjit", "--yjit-call-threshold=1"),
    "mjit": ("--mjit", "--mjit-min-calls=1"),
}

needs_ruby = pytest.mark.skipif(RUBY is None, reason="ruby is not installed (apt-get install ruby3.1)")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="reading another process's memory needs root")


def markers(root: Path = FIXTURES) -> dict[str, tuple[str, int]]:
    """`@frame:NAME` marker -> (file under `root`, line) in the fixture scripts."""
    out = {}
    for path in (CHAIN, LIB, THREADS):
        for number, text in enumerate(path.read_text().splitlines(), 1):
            found = re.search(r"@frame:([\w-]+)", text)
            if found:
                out[found.group(1)] = (str(root / path.name), number)
    return out


def expected_chain(root: Path = FIXTURES) -> list[tuple[str, str, int]]:
    """(function, file, line) of the chain below the leaf, root first: <main> down to Walker#recurse."""
    at = markers(root)
    recurse_self = ("Walker#recurse", *at["recurse-self"])
    return [
        ("<main>", *at["main"]),
        ("Shapes::Circle#run", *at["run"]),
        ("Helper.apply", *at["apply"]),
        ("Array#sort", "", 0),
        ("block in Helper.apply", *at["block"]),
        ("Shapes::Circle#area", *at["area"]),
        recurse_self,
        recurse_self,
        recurse_self,
        ("Walker#recurse", *at["recurse-leaf"]),
    ]


def expected_park(root: Path = FIXTURES) -> list[tuple[str, str, int]]:
    """The whole parked stack, root first."""
    return [*expected_chain(root), ("Walker#leaf", *markers(root)["leaf-park"]), ("IO#gets", "", 0)]


def _triples(stack: RubyStack) -> list[tuple[str, str, int]]:
    return [(f.function, f.file, f.line) for f in stack.frames]


@contextmanager
def running_chain(mode: str, jit: str = "none") -> Iterator[subprocess.Popen[str]]:
    """Run chain.rb in `mode` ("park": blocked in IO#gets; "spin": String#* in a loop) once it is ready,
    with `jit` ("none", "yjit", "mjit"); skips when this ruby cannot run that JIT."""
    assert RUBY is not None
    process = subprocess.Popen(
        [RUBY, *JIT_MODES[jit], str(CHAIN), mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=FIXTURES,
    )
    try:
        assert process.stdout is not None
        status = process.stdout.readline().strip()
        if not status.startswith("ready"):
            if jit != "none":
                pytest.skip(f"this ruby cannot run with {' '.join(JIT_MODES[jit])}")
            pytest.fail(f"chain.rb exited with {process.wait(timeout=10)}")
        assert status == f"ready jit={jit}", status
        if mode == "park":
            wait_blocked_on_stdin(process.pid)
        yield process
    finally:
        process.kill()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


def _save_capture(process: RubyProcess, ec: int, memory: RecordingMemory) -> None:
    """Write the reads of one walk to CAPTURE (FLEETPROF_RUBY_RECAPTURE=1 regenerates it)."""
    binary = process.binary
    CAPTURE.write_text(
        json.dumps(
            {
                "ruby": ".".join(map(str, binary.version)),
                "root": str(FIXTURES),
                "ec": ec,
                "global_symbols": binary.global_symbols + process.bias,
                "blocks": [[addr, data.hex()] for addr, data in sorted(memory.blocks.items())],
            },
            indent=0,
        )
        + "\n"
    )


@needs_ruby
@needs_root
@pytest.mark.parametrize("jit", list(JIT_MODES))
def test_walker_reads_the_parked_chain_exactly(jit: str) -> None:
    """Every frame, name, file and line of the chain parked in IO#gets, root first; C functions named;
    the same with YJIT compiling every method on its first call and with MJIT."""
    with running_chain("park", jit) as process:
        found = find_ruby(process.pid)
        assert isinstance(found, RubyProcess), found
        with ProcessMemory(process.pid) as mem:
            ec = found.execution_context(mem)
            assert isinstance(ec, int), ec
            recorder = RecordingMemory(mem)
            stack = walk_process(found, recorder, ec)
    assert stack.error == ""
    assert _triples(stack) == expected_park()
    assert all(f.kind is FrameKind.INTERPRETED and f.runtime == RUNTIME for f in stack.frames)
    by_name = {f.function: f for f in stack.frames}
    assert by_name["Walker#leaf"].start_line == markers()["leaf-park"][1] - 1
    assert by_name["Shapes::Circle#area"].start_line == markers()["area"][1] - 1
    # raw frames are innermost first; C functions carry no iseq, only their method entry
    assert [raw.is_cfunc for raw in stack.raw] == [f.file == "" for f in stack.frames[::-1]]
    assert all(raw.method_entry for raw in stack.raw[:-1]) and stack.raw[-1].method_entry == 0
    assert all(bool(raw.frame_flags & VM_FRAME_FLAG_CFRAME) == raw.is_cfunc for raw in stack.raw)
    # rb_vm_exec native frames stand for the Ruby frames up to a FINISH one: the block (yielded to by
    # Array#sort's C code) and <main> (run by ruby_exec_node); raw is innermost first.
    assert [i for i, raw in enumerate(stack.raw) if raw.ends_native_segment] == [7, 11]
    if jit == "none" and os.environ.get("FLEETPROF_RUBY_RECAPTURE") == "1":
        _save_capture(found, ec, recorder)


def _stopped(pid: int, timeout: float = 5.0) -> None:
    """Wait until `pid` is in state T (stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T":
            return
        time.sleep(0.005)
    pytest.fail(f"pid {pid} did not stop")


@needs_ruby
@needs_root
def test_walker_reads_a_spinning_chain_stopped_in_a_c_method() -> None:
    """SIGSTOP while it spins: the chain ends in Walker#leaf -> Kernel#loop -> its block -> String#*."""
    leaf = markers()["leaf-spin"]
    tail = [
        ("Walker#leaf", *leaf),
        ("Kernel#loop", "", 0),
        ("block in Walker#leaf", *leaf),
        ("String#*", "", 0),
    ]
    seen = []
    with running_chain("spin") as process:
        for _ in range(40):
            os.kill(process.pid, signal.SIGSTOP)
            _stopped(process.pid)
            stack = walk_pid(process.pid)
            os.kill(process.pid, signal.SIGCONT)
            assert isinstance(stack, RubyStack), stack
            seen.append(_triples(stack)[-1])
            if stack.error == "" and _triples(stack) == expected_chain() + tail:
                return
            time.sleep(0.01)
    pytest.fail(f"never stopped inside String#* with the whole chain; innermost frames seen: {seen}")


def _fs_base(pid: int) -> int:
    """The thread pointer of thread `pid` (PTRACE_GETREGS: user_regs_struct.fs_base), read attached."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = (ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p)
    regs = (ctypes.c_ulonglong * 27)()
    if libc.ptrace(16, pid, None, None) != 0:  # PTRACE_ATTACH
        pytest.skip(f"ptrace attach refused ({os.strerror(ctypes.get_errno())})")
    try:
        os.waitpid(pid, 0x40000000)  # __WALL: `pid` may be a thread other than the leader
        assert libc.ptrace(12, pid, None, ctypes.byref(regs)) == 0  # PTRACE_GETREGS
    finally:
        libc.ptrace(17, pid, None, None)  # PTRACE_DETACH
    return regs[21]


@needs_ruby
@needs_root
def test_thread_local_execution_context_is_the_walked_one() -> None:
    """`ruby_current_ec` through the thread pointer (the route BPF takes: fsbase -> DTV -> libruby's TLS
    block) is the same EC the ractor route finds, and walks to the same chain."""
    with running_chain("park") as process:
        found = find_ruby(process.pid)
        assert isinstance(found, RubyProcess), found
        assert found.binary.tls is not None
        thread_pointer = _fs_base(process.pid)
        with ProcessMemory(process.pid) as mem:
            by_tls = found.tls_execution_context(mem, thread_pointer)
            assert by_tls == found.execution_context(mem)
            assert isinstance(by_tls, int)
            assert _triples(walk_process(found, mem, by_tls)) == expected_park()


def _thread_stacks(process: RubyProcess) -> list[list[tuple[str, str, int]]]:
    """The Ruby stack of every thread of `process` that has an EC, each found through its own TLS."""
    stacks = []
    for tid in sorted(int(name) for name in os.listdir(f"/proc/{process.pid}/task")):
        thread_pointer = _fs_base(tid)
        with ProcessMemory(process.pid) as mem:
            ec = process.tls_execution_context(mem, thread_pointer)
            if isinstance(ec, int):
                stack = walk_process(process, mem, ec)
                stacks.append(_triples(stack) + ([("error", stack.error, 0)] if stack.error else []))
    return stacks


@needs_ruby
@needs_root
def test_each_thread_walks_its_own_stack_through_its_tls() -> None:
    """Three Ruby threads: each thread's fs base leads (DTV -> libruby's TLS block -> ruby_current_ec) to
    its own EC and stack, as it will for BPF on whichever thread a sample interrupts."""
    assert RUBY is not None
    at = markers()
    spawn = ("block in <main>", *at["spawn"])
    wanted = [
        [("<main>", *at["join"]), ("Array#each", "", 0), ("Thread#join", "", 0)],
        [spawn, ("Sleeper#alpha", *at["alpha"]), ("Kernel#sleep", "", 0)],
        [spawn, ("Sleeper#beta", *at["beta"]), ("Kernel#sleep", "", 0)],
    ]
    process = subprocess.Popen([RUBY, str(THREADS)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        found = find_ruby(process.pid)
        assert isinstance(found, RubyProcess), found
        for _ in range(100):  # the main thread reaches Thread#join just after "ready"
            stacks = _thread_stacks(found)
            if sorted(stacks) == sorted(wanted):
                break
            time.sleep(0.02)
    finally:
        process.kill()
        process.wait(timeout=10)
        if process.stdout:
            process.stdout.close()
    assert sorted(stacks) == sorted(wanted)


@needs_ruby
def test_discovery_reads_version_and_symbols_of_the_installed_ruby() -> None:
    """The interpreter's version matches RUBY_VERSION; the EC routes, global symbols and rb_vm_exec are
    found in libruby (the `ruby` executable itself is not an interpreter: None)."""
    assert RUBY is not None
    version = subprocess.run([RUBY, "-e", "print RUBY_VERSION"], capture_output=True, text=True).stdout
    maps = subprocess.run(
        [RUBY, "-e", "print File.read('/proc/self/maps')"], capture_output=True, text=True
    ).stdout
    library = next(line.split()[-1] for line in maps.splitlines() if "libruby" in line)
    found = inspect_ruby_binary(library)
    assert isinstance(found, RubyBinary), found
    assert ".".join(map(str, found.version)) == version
    assert found.version_source == "ruby_version"
    assert found.layout.version == found.version[:2]
    assert found.tls is not None and found.tls.offset >= 0 and (found.tls.module_got or found.tls.tpoff_got)
    assert found.single_main_ractor and found.current_vm_ptr and found.global_symbols
    assert found.vm_exec[0] and found.vm_exec[1] > 1000
    assert is_ruby_name(library) and is_ruby_name("/usr/bin/ruby3.1") and not is_ruby_name("/bin/rubyx")
    assert inspect_ruby_binary(os.path.realpath(RUBY)) is None


@needs_ruby
def test_fake_versions_give_one_line_reasons(tmp_path: Path) -> None:
    """A patched libruby claiming Ruby 3.9 is unsupported with the covered versions."""
    assert RUBY is not None
    maps = subprocess.run(
        [RUBY, "-e", "print File.read('/proc/self/maps')"], capture_output=True, text=True
    ).stdout
    library = next(line.split()[-1] for line in maps.splitlines() if "libruby" in line)
    data = Path(library).read_bytes()
    version = re.search(rb"\x00(3\.\d+\.\d+)\x00", data)
    assert version is not None
    fake = tmp_path / "libruby-3.9.so.3.9"
    fake.write_bytes(data.replace(version.group(0), b"\x003.9.0" + b"\x00" * (len(version.group(0)) - 6)))
    found = inspect_ruby_binary(fake, file_id="f" * 32)
    assert isinstance(found, RubyUnsupported)
    assert found.reason == "Ruby 3.9 has no struct layout (covered: 3.1)"
    assert found.marker == f"[unwind: ruby: {found.reason}]" and "\n" not in found.marker


LAYOUT = layout_for(3, 1)
assert LAYOUT is not None


def _words(*values: int) -> bytes:
    return b"".join(value.to_bytes(8, "little") for value in values)


def test_walk_stops_on_bad_contexts_frames_and_depth() -> None:
    """An unreadable EC, a cfp outside the VM stack, an unreadable frame or environment, and a too-deep
    stack each stop the walk with a reason; DUMMY frames and C frames without a method entry are skipped."""
    mem = FakeMemory()
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], "execution context 0x1000 unreadable")
    mem.put(0x1000, _words(0x10000, 0x100, 0x20000))
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], "control frame 0x20000 outside the VM stack")
    end = 0x10000 + 0x100 * 8
    first = end - 4 * LAYOUT.cfp_size
    mem.put(0x1000, _words(0x10000, 0x100, first))
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], f"control frame {first:#x} unreadable")
    env = 0x30000
    for index in range(4):
        mem.put(first + index * LAYOUT.cfp_size, _words(0, 0, 0, 0, env + 16))
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], f"environment {env + 16:#x} unreadable")
    mem.put(env, _words(0, 0, VM_FRAME_MAGIC_DUMMY))
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], "outer environment 0x0 unreadable")
    mem.put(env, _words(0, 0, VM_FRAME_MAGIC_DUMMY | VM_ENV_FLAG_LOCAL))
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], "")
    mem.put(env, _words(0, 0, VM_FRAME_FLAG_CFRAME | VM_ENV_FLAG_LOCAL))  # a C frame with no method entry
    assert walk_ec(mem, LAYOUT, 0x1000) == ([], "")
    assert walk_ec(mem, LAYOUT, 0x1000, max_depth=3) == ([], "stack deeper than 3 control frames")


def test_captured_park_replays_without_a_process() -> None:
    """The bytes one live walk read (tests/fixtures/ruby/captured_park.json, Ruby 3.1) walk and name to
    the same chain with no process and no root: the oracle the BPF walker's output is checked against."""
    from fleetprof.interpreters.ruby.symbolizer import RubyNamer
    from fleetprof.interpreters.ruby.walker import symbolize

    capture = json.loads(CAPTURE.read_text())
    layout = layout_for(*map(int, capture["ruby"].split(".")[:2]))
    assert layout is not None
    mem = FakeMemory()
    for addr, data in capture["blocks"]:
        mem.put(addr, bytes.fromhex(data))
    raw, error = walk_ec(mem, layout, capture["ec"])
    assert error == ""
    assert [i for i, item in enumerate(raw) if item.ends_native_segment] == [7, 11]
    frames, name_error = symbolize(RubyNamer(mem, layout, capture["global_symbols"]), raw)
    assert name_error == ""
    got = [(f.function, f.file, f.line) for f in frames[::-1]]
    assert got == expected_park(Path(capture["root"]))
    # without the global symbol table C functions become error frames and classes go unnamed
    frames, name_error = symbolize(RubyNamer(mem, layout, 0), raw)
    assert name_error == "no ruby_global_symbols: C functions cannot be named"
    assert frames[0].folded_name() == f"[unwind: ruby: {name_error}]" and frames[0].kind is FrameKind.ERROR
    assert re.fullmatch(r"#<Class:0x[0-9a-f]+>#leaf", frames[1].function), frames[1].function
