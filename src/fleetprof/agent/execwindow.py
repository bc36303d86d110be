"""Samples taken inside execve after its point of no return: the task's old image is being torn down and its
new one has not run, so the user registers belong to a stack that no longer exists. Such a sample whose user
unwinding failed is kept with its kernel frames only (SAMPLE_FLAG_EXECING) instead of a broken user stack.
"""

from __future__ import annotations

import bisect

from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.tracer import layout

# The ELF loader and the exec steps after the point of no return (exec_mmap releases the old mm).
EXEC_FUNCTIONS = frozenset({"load_elf_binary", "begin_new_exec", "setup_new_exec", "exec_mmap"})
_HDR = layout.HEADER_STRUCT
_FRAME_SIZE = layout.FRAME_SIZE
_ADDR_AT = 8  # offset of struct frame.addr


class ExecWindow:
    """Recognises exec-transition samples by their kernel frames."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        ranges = sorted(ranges)
        self._starts = [lo for lo, _ in ranges]
        self._ends = [hi for _, hi in ranges]

    @classmethod
    def from_kernel(cls, symbols: KernelSymbols | None = None) -> ExecWindow:
        """The window of the running kernel (empty when kernel addresses are hidden)."""
        symbols = symbols or KernelSymbols.load()
        return cls(symbols.ranges(set(EXEC_FUNCTIONS)))

    def _inside(self, addr: int) -> bool:
        i = bisect.bisect_right(self._starts, addr) - 1
        return i >= 0 and addr < self._ends[i]

    def rewrite(self, data: bytes) -> bytes | None:
        """The kernel-only record for a failed sample taken in the exec window, else None."""
        ktime, pid, tid, cpu, nk, _, error, flags, tag, labels, comm, pcomm = _HDR.unpack_from(data)
        if not error or not nk or not self._starts:
            return None
        base = layout.HEADER_SIZE
        addrs = (
            int.from_bytes(data[o : o + 8], "little")
            for o in range(base + _ADDR_AT, base + nk * _FRAME_SIZE, _FRAME_SIZE)
        )
        if not any(self._inside(a) for a in addrs):
            return None
        header = _HDR.pack(
            ktime,
            pid,
            tid,
            cpu,
            nk,
            0,
            layout.UNWIND_COMPLETE,
            flags | layout.SAMPLE_FLAG_EXECING,
            tag,
            labels,
            comm,
            pcomm,
        )
        return header + data[base : base + nk * _FRAME_SIZE]
