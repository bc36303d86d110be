"""Read another process's memory without stopping it: process_vm_readv, falling back to /proc/PID/mem.

Reads never raise for the usual failures (process gone, unmapped address, no permission): they return
None, and `last_error` keeps the errno name for error counters.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable, Sequence

from fleetprof.process.procfs import ProcFS

MAX_READ = 1 << 20  # one read larger than this is refused: a corrupt length, not a real object
_IOV_MAX = 1024
_PROCESS_GONE = -1  # _readv: ESRCH, stop reading
_SYSCALL_UNUSABLE = -2  # _readv: ENOSYS or EPERM (seccomp, sandbox): use /proc/PID/mem from now on


def _load_readv() -> Callable[..., int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        func = libc.process_vm_readv
    except (OSError, AttributeError):
        return None
    # The iovec arrays are passed as packed bytes: (iov_base, iov_len) pairs of u64.
    iovecs, count = ctypes.c_void_p, ctypes.c_ulong
    func.argtypes = (ctypes.c_int, iovecs, count, iovecs, count, ctypes.c_ulong)
    func.restype = ctypes.c_ssize_t
    return func


_process_vm_readv = _load_readv()


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22): tells a reused pid apart."""
    try:
        return ProcFS().stat(pid).start_time
    except OSError:
        return None


class MemoryReader:
    """Typed reads on top of `read`; process memory, core files and test fakes share these."""

    last_error = ""

    def read(self, addr: int, size: int) -> bytes | None:
        """`size` bytes at `addr`, or None unless all of them could be read."""
        raise NotImplementedError

    def read_many(self, requests: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """Each (address, size) request's bytes, or None for a request that could not be read in full."""
        return [self.read(addr, size) for addr, size in requests]

    def u64(self, addr: int) -> int | None:
        """An unsigned 64-bit little-endian value, or None."""
        data = self.read(addr, 8)
        return None if data is None else struct.unpack("<Q", data)[0]

    def u32(self, addr: int) -> int | None:
        """An unsigned 32-bit little-endian value, or None."""
        data = self.read(addr, 4)
        return None if data is None else struct.unpack("<I", data)[0]

    def close(self) -> None:
        """Release what the reader holds."""


class ProcessMemory(MemoryReader):
    """Reads of one process's address space, batched into as few system calls as possible."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.last_error = ""
        self._use_readv = _process_vm_readv is not None
        self._mem_fd: int | None = None

    def close(self) -> None:
        """Release the /proc/PID/mem descriptor, if the fallback opened one."""
        if self._mem_fd is not None:
            os.close(self._mem_fd)
            self._mem_fd = None

    def __enter__(self) -> ProcessMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read(self, addr: int, size: int) -> bytes | None:
        """`size` bytes at `addr`, or None unless all of them could be read."""
        return self.read_many(((addr, size),))[0]

    def read_many(self, requests: Sequence[tuple[int, int]]) -> list[bytes | None]:
        """Each (address, size) request's bytes, or None for a request that could not be read in full."""
        results: list[bytes | None] = [None] * len(requests)
        todo = []
        for index, (addr, size) in enumerate(requests):
            if size == 0:
                results[index] = b""
            elif 0 < size <= MAX_READ and addr > 0 and addr + size <= 1 << 64:
                todo.append(index)
            else:
                self.last_error = "EINVAL"
        for start in range(0, len(todo), _IOV_MAX):
            self._read_batch(requests, todo[start : start + _IOV_MAX], results)
        return results

    def _read_batch(
        self, requests: Sequence[tuple[int, int]], batch: list[int], results: list[bytes | None]
    ) -> None:
        while batch and self._use_readv:
            done = self._readv(requests, batch, results)
            if done == _PROCESS_GONE:
                return
            if done == _SYSCALL_UNUSABLE:
                self._use_readv = False
                break
            if done == len(batch):
                return
            # The request at `done` failed or was cut short: retry it alone, then go on after it.
            if self._readv(requests, batch[done : done + 1], results) == _PROCESS_GONE:
                return
            batch = batch[done + 1 :]
        if not self._use_readv:
            for index in batch:
                results[index] = self._pread(*requests[index])

    def _readv(
        self, requests: Sequence[tuple[int, int]], batch: list[int], results: list[bytes | None]
    ) -> int:
        """Read `batch` with one process_vm_readv: how many requests were filled in full, or a sentinel."""
        assert _process_vm_readv is not None
        count = len(batch)
        sizes = [requests[i][1] for i in batch]
        buffer = ctypes.create_string_buffer(sum(sizes))
        local: list[int] = []
        remote: list[int] = []
        offset = ctypes.addressof(buffer)
        for index, size in zip(batch, sizes, strict=True):
            local += (offset, size)
            remote += (requests[index][0], size)
            offset += size
        iovecs = f"<{2 * count}Q"
        local_iov, remote_iov = struct.pack(iovecs, *local), struct.pack(iovecs, *remote)
        got = _process_vm_readv(self.pid, local_iov, count, remote_iov, count, 0)
        if got < 0:
            err = ctypes.get_errno()
            self.last_error = errno.errorcode.get(err, str(err))
            if err == errno.ESRCH:
                return _PROCESS_GONE
            return _SYSCALL_UNUSABLE if err in (errno.ENOSYS, errno.EPERM) else 0
        raw = buffer.raw
        offset = 0
        filled = 0
        for index, size in zip(batch, sizes, strict=True):
            if offset + size > got:
                self.last_error = "EFAULT"
                break
            results[index] = raw[offset : offset + size]
            offset += size
            filled += 1
        return filled

    def _pread(self, addr: int, size: int) -> bytes | None:
        if self._mem_fd is None:
            try:
                self._mem_fd = os.open(f"/proc/{self.pid}/mem", os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                self.last_error = errno.errorcode.get(exc.errno or 0, "EIO")
                return None
        try:
            data = os.pread(self._mem_fd, size, addr)
        except (OSError, OverflowError) as exc:
            self.last_error = errno.errorcode.get(getattr(exc, "errno", 0) or 0, "EIO")
            return None
        if len(data) != size:
            self.last_error = "EFAULT"
            return None
        return data
