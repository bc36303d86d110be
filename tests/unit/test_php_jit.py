"""What the agent tells BPF about PHP's opcache JIT and about forked children: the dispatch jump JIT'd code is
unwound as, the JIT buffer read from a live php8.2's maps, and an FPM-like forked child adopted (its own
php_procs entry) while a child that runs another executable is not."""

from __future__ import annotations

import os
import shutil
import signal
import struct
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from fleetprof.agent.php import PhpSupport, _php_like
from fleetprof.agent.runtime import RuntimeProcess
from fleetprof.elf.view import ElfView
from fleetprof.interpreters.php.discovery import PhpBinary, inspect_php_binary
from fleetprof.interpreters.php.process import jit_buffer
from fleetprof.interpreters.php.procinfo import PhpProcInfo
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame

PHP = shutil.which("php8.2") or shutil.which("php")
JIT = ("-d", "opcache.enable_cli=1", "-d", "opcache.jit=tracing", "-d", "opcache.jit_buffer_size=16M")
needs_php = pytest.mark.skipif(PHP is None, reason="php8.2-cli is not installed (apt-get install php8.2-cli)")


class FakeMap:
    """A BPF hash map in a dict (update, lookup, delete)."""

    def __init__(self) -> None:
        self.items: dict[bytes, bytes] = {}

    def update(self, key: bytes, value: bytes, flags: int = 0) -> None:
        self.items[key] = value

    def lookup(self, key: bytes) -> bytes | None:
        return self.items.get(key)

    def delete(self, key: bytes) -> bool:
        return self.items.pop(key, None) is not None


def _binary() -> PhpBinary:
    assert PHP is not None
    binary = inspect_php_binary(os.path.realpath(PHP))
    assert isinstance(binary, PhpBinary), binary
    return binary


@contextmanager
def _parked(*options: str) -> Iterator[int]:
    """php with `options` blocked reading stdin, after opcache's startup; its pid."""
    assert PHP is not None
    code = "echo 'ready', PHP_EOL; fgets(STDIN);"
    proc = subprocess.Popen(
        [PHP, *options, "-r", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


@needs_php
def test_dispatch_is_one_byte_into_execute_exs_jmp_r15() -> None:
    """Debian's php8.2 is a HYBRID VM: jit_dispatch lies in execute_ex, one byte into `jmp *(%r15)`."""
    binary = _binary()
    start, size = binary.execute_ex
    assert binary.vm_kind == 4 and start < binary.jit_dispatch < start + size
    with ElfView(binary.path) as image:
        assert image.read_vaddr(binary.jit_dispatch - 1, 3) == b"\x41\xff\x27"


@needs_php
def test_jit_buffer_is_the_shared_executable_mapping() -> None:
    """With the JIT on, the buffer is php's r-xs mapping of opcache's shared memory; without it, none."""
    with _parked(*JIT) as pid:
        found = jit_buffer(pid)
        assert found is not None
        with open(f"/proc/{pid}/maps") as maps:
            line = next(x for x in maps if x.startswith(f"{found[0]:x}-{found[1]:x} "))
        assert line.split()[1] == "r-xs", line
    with _parked("-d", "opcache.enable_cli=0") as pid:
        assert jit_buffer(pid) is None


@needs_php
def test_process_info_holds_the_jit_buffer_and_dispatch() -> None:
    """The php_procs value of a JIT process carries the buffer and the dispatch at the process's bias."""
    binary = _binary()
    support = PhpSupport(FakeMap(), FakeMap())  # type: ignore[arg-type]
    with _parked(*JIT) as pid:
        info = PhpProcInfo.from_buffer_copy(support.process_info(pid, binary, 0x1000))
        assert (info.jit_start, info.jit_end) == jit_buffer(pid)
        assert info.jit_dispatch == binary.jit_dispatch + 0x1000


@needs_php
def test_a_forked_child_is_adopted_and_another_executable_is_not() -> None:
    """A fork of a registered process gets its own php_procs entry when its first frame is resolved; a
    child that exec'd something else stays out (and is not looked up again)."""
    binary = _binary()
    procs = FakeMap()
    support = PhpSupport(procs, FakeMap())  # type: ignore[arg-type]
    support._procs[os.getpid()] = RuntimeProcess(os.getpid(), binary, 0)
    raw = RawFrame(id=0x1000, addr=1, aux=0, kind=layout.FRAME_PHP, flags=0)
    child = os.fork()
    if child == 0:
        time.sleep(30)
        os._exit(0)
    other = subprocess.Popen(["sleep", "30"])
    try:
        support.resolve(child, raw)
        assert procs.lookup(struct.pack("<I", child)) is not None
        assert support.stats()["php_processes"] == 2
        support.resolve(other.pid, raw)
        assert procs.lookup(struct.pack("<I", other.pid)) is None
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        other.kill()
        other.wait()
    support.process_gone(child)
    assert procs.lookup(struct.pack("<I", child)) is None


def test_stacks_worth_adopting_are_told_from_the_raw_frames() -> None:
    """A stack with a PHP frame, a raw pc or code outside any file (an FPM worker not scanned yet, or JIT
    code) sends its process for adoption; file-backed native frames alone do not."""
    native = b"".join(
        layout.FRAME_STRUCT.pack(0x1234 + i, 0x400000, 0, layout.FRAME_NATIVE, 1, 0) for i in range(9)
    )
    anonymous = layout.FRAME_STRUCT.pack(0, 0x7F00_0000, 0, layout.FRAME_NATIVE, 1, 0)
    raw = layout.FRAME_STRUCT.pack(0, 0x7F00_0000, 0, layout.FRAME_NATIVE_RAW, 1, 0)
    php = layout.FRAME_STRUCT.pack(0x5555, 12, 7, layout.FRAME_PHP, 0, 0)
    assert not _php_like(native) and not _php_like(b"")
    assert _php_like(native + anonymous) and _php_like(raw + native) and _php_like(native + php)
