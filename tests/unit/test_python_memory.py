"""Process memory reads: batched, partial, unreadable, process gone, and the /proc/PID/mem fallback."""

from __future__ import annotations

import ctypes
import mmap
import os
import subprocess

import pytest

from fleetprof.process.memory import MAX_READ, ProcessMemory, process_start_time


@pytest.fixture
def buffers() -> list[ctypes.Array]:
    return [ctypes.create_string_buffer(bytes([i]) * 64 + b"tail%d" % i) for i in range(5)]


def _addr(buffer: ctypes.Array) -> int:
    return ctypes.addressof(buffer)


def _unmapped_page() -> int:
    """An address that was mapped and no longer is."""
    area = mmap.mmap(-1, 4096)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(area))
    area.close()
    return addr


@pytest.mark.parametrize("fallback", [False, True], ids=["process_vm_readv", "proc-mem"])
def test_reads_and_batches(buffers: list[ctypes.Array], fallback: bool) -> None:
    with ProcessMemory(os.getpid()) as mem:
        mem._use_readv = not fallback
        assert mem.read(_addr(buffers[2]), 68) == bytes([2]) * 64 + b"tail"
        bad = _unmapped_page()
        requests = [(_addr(b), 65) for b in buffers]
        requests.insert(2, (bad, 16))
        got = mem.read_many(requests)
        assert got[2] is None
        assert [g for i, g in enumerate(got) if i != 2] == [bytes([i]) * 64 + b"t" for i in range(5)]
        assert mem.u32(_addr(buffers[1])) == 0x01010101
        assert mem.u64(bad) is None


def test_a_read_that_crosses_into_unmapped_memory_is_none() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    )
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    base = libc.mmap(
        None, 8192, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0
    )
    assert base and base != ctypes.c_void_p(-1).value
    try:
        ctypes.memmove(base + 4090, b"edge!!", 6)
        assert libc.munmap(base + 4096, 4096) == 0
        with ProcessMemory(os.getpid()) as mem:
            assert mem.read(base + 4090, 6) == b"edge!!"
            assert mem.read(base + 4090, 12) is None
            assert mem.read_many([(base + 4090, 12), (base + 4090, 6)]) == [None, b"edge!!"]
    finally:
        libc.munmap(base, 4096)


def test_bad_requests_and_unreadable_processes_give_none() -> None:
    with ProcessMemory(os.getpid()) as mem:
        assert mem.read(0, 8) is None
        assert mem.read(8, 8) is None
        assert mem.read(0x1000, MAX_READ + 1) is None
        assert mem.read(0x1000, -1) is None
        assert mem.read((1 << 64) - 4, 8) is None
        assert mem.read_many([]) == []
        assert mem.read(123, 0) == b""
    child = subprocess.Popen(["sleep", "30"])
    child.kill()
    child.wait()
    with ProcessMemory(child.pid) as mem:
        assert mem.read(0x400000, 8) is None
        assert mem.read_many([(0x400000, 8)] * 3) == [None] * 3
        assert mem.last_error in ("ESRCH", "ENOENT")
    with ProcessMemory(1 << 30) as mem:  # no such pid, and the fallback cannot open it either
        mem._use_readv = False
        assert mem.read(0x400000, 8) is None


def test_start_time_tells_processes_apart() -> None:
    mine = process_start_time(os.getpid())
    with open("/proc/self/stat") as f:  # field 22, counted after the parenthesized command name
        assert mine == int(f.read().rsplit(")", 1)[1].split()[19])
    assert process_start_time(os.getpid()) == mine
    assert process_start_time(1 << 30) is None
