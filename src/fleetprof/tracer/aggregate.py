"""Aggregate raw sample records by (process, thread, stack, label set) without decoding frames: the hot
path.

Each record's frame bytes are the aggregation key as they come; frames are decoded once per unique stack.
"""

from __future__ import annotations

import ctypes
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from fleetprof.tracer import layout

_HDR = layout.HEADER_STRUCT
_HDR_SIZE = layout.HEADER_SIZE
_FRAME = layout.FRAME_STRUCT
_HELD = layout.SAMPLE_FLAG_DEFERRED | layout.SAMPLE_FLAG_SNAPSHOT
SEEN_LIMIT = 1 << 15  # stacks of earlier windows remembered as seen (on_new_stack is not called again)
SEEN_S = 60.0  # ... for at most this long: then every stack is new once more (tables' LRU is touched)


class RawFrame(NamedTuple):
    """One decoded frame of a record, fields in struct frame's order (tracer/bpf/sample.h says what they
    mean per kind). A tuple: built straight from struct.iter_unpack, hashed in C."""

    id: int
    addr: int
    aux: int
    kind: int
    flags: int
    reserved: int = 0


class StackKey(NamedTuple):
    """Identity of an aggregated stack: who ran it and its raw frames (leaf first). A tuple, because one
    is built and hashed per sample."""

    pid: int
    tid: int
    comm: bytes
    pcomm: bytes
    error: int
    flags: int
    num_kernel: int
    frames: bytes
    labels: int = 0  # a Go goroutine's label set (address), 0 when none: samples split by label set
    labels_tag: int = 0  # tells that set from a later one at the same address


@dataclass(slots=True)
class StackCounts:
    """How often a stack was seen, on which CPUs, and when (realtime ns)."""

    count: int = 0
    cpus: set[int] = field(default_factory=set)
    timestamps_ns: list[int] = field(default_factory=list)


def decode_frames(frames: bytes) -> list[RawFrame]:
    """Decode packed frames."""
    return list(map(RawFrame._make, _FRAME.iter_unpack(frames)))


class Aggregator:
    """Counts records per StackKey; `on_new_stack` is called once for every new key (e.g. to symbolize
    interpreter frames while the process is still alive). Cut into windows (`cut`), a key counted in an
    earlier window is not new again for up to SEEN_S."""

    def __init__(self, keep_timestamps: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.stacks: dict[StackKey, StackCounts] = {}
        self.samples = 0
        self.keep_timestamps = keep_timestamps
        self.on_new_stack: Callable[[StackKey], None] | None = None
        # Deferred samples and their stack snapshots go here instead (agent/deferred.py finishes them).
        self.on_deferred: Callable[[bytes, int], None] | None = None
        # Failed in-kernel samples may be rewritten (agent/execwindow.py: taken inside execve).
        self.fix_failed: Callable[[bytes], bytes | None] | None = None
        self.pids: set[int] = set()
        # CLOCK_MONOTONIC (bpf_ktime_get_ns) to CLOCK_REALTIME
        self.realtime_offset_ns = time.time_ns() - time.monotonic_ns()
        # Hashes of the keys of earlier windows (see `cut`): hashes, so the stacks' frame bytes are not kept.
        self._seen: set[int] = set()
        self._clock = clock
        self._seen_until = clock() + SEEN_S

    def cut(self) -> dict[StackKey, StackCounts]:
        """End a window: its stacks, with counting started afresh (and the clock offset refreshed: NTP steps
        and suspend move the realtime clock). Its keys stay seen, so a stack that recurs window after window
        is handed to `on_new_stack` about once per SEEN_S rather than once per window."""
        stacks, self.stacks = self.stacks, {}
        self.samples = 0
        self.pids = set()
        self.realtime_offset_ns = time.time_ns() - time.monotonic_ns()
        now = self._clock()
        if now >= self._seen_until or len(self._seen) + len(stacks) > SEEN_LIMIT:
            self._seen = set()
            self._seen_until = now + SEEN_S
        else:
            self._seen.update(map(hash, stacks))
        return stacks

    def add_record(self, address: int, size: int) -> None:
        """Ring-buffer callback: the record is only valid during the call, so copy what we keep."""
        self.add_bytes(ctypes.string_at(address, size))

    def add_bytes(self, data: bytes) -> None:
        """Count one sample record (header + frames)."""
        ktime, pid, tid, cpu, nk, nu, error, flags, tag, labels, comm, pcomm = _HDR.unpack_from(data)
        if flags & _HELD and self.on_deferred is not None:
            self.on_deferred(data, flags)
            return
        if error and nk and self.fix_failed is not None:
            fixed = self.fix_failed(data)
            if fixed is not None:
                data = fixed
                ktime, pid, tid, cpu, nk, nu, error, flags, tag, labels, comm, pcomm = _HDR.unpack_from(data)
        end = _HDR_SIZE + (nk + nu) * layout.FRAME_SIZE
        key = StackKey(
            pid,
            tid,
            comm.split(b"\0", 1)[0],
            pcomm.split(b"\0", 1)[0],
            error,
            flags,
            nk,
            data[_HDR_SIZE:end],
            labels,
            tag if labels else 0,
        )
        entry = self.stacks.get(key)
        if entry is None:
            entry = self.stacks[key] = StackCounts()
            self.pids.add(pid)
            if self.on_new_stack is not None and hash(key) not in self._seen:
                self.on_new_stack(key)
        entry.count += 1
        entry.cpus.add(cpu)
        if self.keep_timestamps:
            entry.timestamps_ns.append(ktime + self.realtime_offset_ns)
        self.samples += 1

    def whole_share(self) -> float:
        """Share of samples whose user stack ended cleanly (or that had no user stack)."""
        if not self.samples:
            return 0.0
        whole = sum(c.count for k, c in self.stacks.items() if k.error == layout.UNWIND_COMPLETE)
        return whole / self.samples
