"""Memory doubles and process helpers the interpreter walker tests share (no tests here): sparse fake memory,
a recorder of the reads one live walk makes (what a captured fixture replays), and waiting until a parked
interpreter blocks reading its stdin."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from fleetprof.process.memory import MemoryReader


class FakeMemory(MemoryReader):
    """Sparse memory: byte strings at addresses; a read must fall inside one of them."""

    def __init__(self) -> None:
        self.blocks: dict[int, bytes] = {}

    def put(self, addr: int, data: bytes) -> None:
        """Make `data` readable at `addr`."""
        self.blocks[addr] = data

    def read(self, addr: int, size: int) -> bytes | None:
        for start, data in self.blocks.items():
            if start <= addr and addr + size <= start + len(data):
                return data[addr - start : addr - start + size]
        return None


class RecordingMemory(MemoryReader):
    """Passes reads through to `inner` and keeps every answered one: the bytes a fixture replays."""

    def __init__(self, inner: MemoryReader) -> None:
        self.inner = inner
        self.blocks: dict[int, bytes] = {}

    def read(self, addr: int, size: int) -> bytes | None:
        data = self.inner.read(addr, size)
        if data is not None and len(data) > len(self.blocks.get(addr, b"")):
            self.blocks[addr] = data
        return data


def wait_blocked_on_stdin(pid: int, timeout: float = 10.0) -> None:
    """Wait until `pid` sits in read(0, ...) (x86-64 syscall 0): its stack no longer moves."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/syscall").read_text().startswith("0 0x0 "):
                return
        except OSError:
            pass
        time.sleep(0.01)
    pytest.fail(f"pid {pid} did not block reading stdin")
