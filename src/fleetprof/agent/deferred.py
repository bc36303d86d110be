"""Samples the BPF unwinder deferred (SAMPLE_FLAG_DEFERRED): held with their stack snapshots until the
tables they need are loaded, then finished by the userspace unwinder (nativeunwind/replay.py) and counted
like every other sample. Nothing is lost: a sample that can't be finished in time is counted as it came,
ending in its `[unwind: table not ready]` frame. The thread's Python frames BPF walked after deferring
(FRAME_FLAG_TAIL) take the places of their eval-loop frames in the replayed stack.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from fleetprof.nativeunwind.replay import NotReady, RuleLookup, StackCopy, replay
from fleetprof.tracer import layout

_HDR = layout.HEADER_STRUCT
_REGS_OFF = layout.HEADER_SIZE
_STACK_OFF = layout.HEADER_SIZE + layout.SNAPSHOT_REGS_STRUCT.size
MAX_WAIT_S = 30.0
MAX_BYTES = 256 << 20  # snapshots held at once; past this the oldest are counted as they came

Key = tuple[int, int, int]  # cpu, ktime, tid
MappingResolver = Callable[[int, int], "tuple[int, int, int] | None"]
InodeResolver = Callable[[int, int, int], "tuple[int, int, int] | None"]
EvalLoop = Callable[[int, int], bool]
"""(file key, ELF pc) -> whether the pc is in an interpreter's eval loop."""
_FLAGS_AT = 21  # struct frame's flags byte
_TAIL_FLAGS = layout.FRAME_FLAG_TAIL | layout.FRAME_FLAG_CALL_END


@dataclass(slots=True)
class _Pending:
    sample: bytes | None = None
    snapshot: bytes | None = None
    since: float = 0.0
    rescanned: bool = False  # a rescan of its process was asked for a pc no known mapping explained


def split_tail(frames: bytes) -> tuple[bytes, list[list[tuple[int, ...]]]]:
    """The user frames before the Python tail, and the tail grouped by eval-loop call (innermost first),
    each frame as replay's (kind, id, addr, flags, aux) with the tail flags cleared."""
    end = len(frames)
    while end >= layout.FRAME_SIZE and frames[end - layout.FRAME_SIZE + _FLAGS_AT] & layout.FRAME_FLAG_TAIL:
        end -= layout.FRAME_SIZE
    calls: list[list[tuple[int, ...]]] = []
    current: list[tuple[int, ...]] = []
    for fid, addr, aux, kind, fflags, _ in layout.FRAME_STRUCT.iter_unpack(frames[end:]):
        current.append((kind, fid, addr, fflags & ~_TAIL_FLAGS, aux))
        if fflags & layout.FRAME_FLAG_CALL_END:
            calls.append(current)
            current = []
    if current:
        calls.append(current)  # the walk stopped inside a call: its inner frames still name it
    return frames[:end], calls


def _unmapped(record: bytes) -> bool:
    """Whether a finished record stopped at a pc no mapping explained."""
    return _HDR.unpack_from(record)[6] == layout.UNWIND_ERR_NO_MAPPING


class DeferredStacks:
    """Holds deferred samples; `resolve` finishes those whose tables are ready."""

    def __init__(
        self,
        emit: Callable[[bytes], None],
        mapping: MappingResolver,
        inode: InodeResolver,
        rules: RuleLookup,
        want_table: Callable[[int], object],
        pid_ready: Callable[[int], bool],
        want_rescan: Callable[[int], object] = lambda pid: None,
        eval_loop: EvalLoop = lambda key, pc: False,
    ) -> None:
        self._emit = emit
        self._mapping = mapping
        self._inode = inode
        self._rules = rules
        self._want_table = want_table
        self._pid_ready = pid_ready
        self._want_rescan = want_rescan
        self._eval_loop = eval_loop
        self._pending: dict[Key, _Pending] = {}
        self._bytes = 0
        self.finished = 0  # deferred samples completed in userspace
        self.expired = 0  # counted as they came (table never ready, snapshot lost, memory bound)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, data: bytes, flags: int) -> None:
        """A DEFERRED sample or its SNAPSHOT (ring-buffer order puts the sample first)."""
        ktime, _, tid, cpu = _HDR.unpack_from(data)[:4]
        key = (cpu, ktime, tid)
        entry = self._pending.get(key)
        if entry is None:
            entry = self._pending[key] = _Pending(since=time.monotonic())
        if flags & layout.SAMPLE_FLAG_SNAPSHOT:
            entry.snapshot = data
        else:
            entry.sample = data
        self._bytes += len(data)
        while self._bytes > MAX_BYTES and self._pending:
            self._give_up(next(iter(self._pending)))

    def resolve(self, final: bool = False) -> None:
        """Finish every held sample whose tables are loaded; with `final`, count the rest as they came."""
        now = time.monotonic()
        ready: dict[int, bool] = {}  # pid -> _pid_ready, asked once per pass (it may stat /proc)
        for key in list(self._pending):
            entry = self._pending[key]
            if entry.sample is None:
                if final or now - entry.since > 1.0:  # a snapshot whose sample was lost
                    self._drop(key)
                continue
            if entry.snapshot is None:
                if final or now - entry.since > 1.0:  # the snapshot did not fit the ring
                    self._give_up(key)
                continue
            pid = _HDR.unpack_from(entry.sample)[1]
            if pid not in ready:
                ready[pid] = final or self._pid_ready(pid)
            if not ready[pid] and now - entry.since < MAX_WAIT_S:
                continue  # its maps are about to be read
            try:
                data = self._finish(entry.sample, entry.snapshot)
                if not final and not entry.rescanned and _unmapped(data) and os.path.exists(f"/proc/{pid}"):
                    # A pc outside the maps read so far, in a live process: it mapped more since (the
                    # loader's libraries, a dlopen). Read its maps again before settling.
                    entry.rescanned = True
                    self._want_rescan(pid)
                    continue
            except NotReady as exc:
                if exc.file_key:
                    self._want_table(exc.file_key)
                if final or now - entry.since > MAX_WAIT_S:
                    if exc.file_key:
                        self._give_up(key)
                    else:
                        self._emit(self._as_is(entry.sample, layout.UNWIND_ERR_NO_MAPPING, entry.snapshot))
                        self._drop(key)
                        self.expired += 1
                continue
            self._drop(key)
            self.finished += 1
            self._emit(data)

    def _finish(self, sample: bytes, snapshot: bytes) -> bytes:
        """The sample record with the replayed frames appended and its error replaced."""
        ktime, pid, tid, cpu, nk, nu, _, flags, tag, labels, comm, pcomm = _HDR.unpack_from(sample)
        regs = layout.SnapshotRegs.from_buffer_copy(snapshot, _REGS_OFF)
        stack = StackCopy(regs.sp, snapshot[_STACK_OFF : _STACK_OFF + regs.stack_size])
        first = None
        vma: tuple[int, int] | None = None  # the snapshot's vma: every pc in it has the first pc's mapping
        if regs.file_id:
            first = (regs.file_id, regs.bias, layout.MAPPING_FLAG_HAS_TABLE)
        else:
            first = self._mapping(pid, regs.pc)
            if first is None and regs.dev:
                known = self._inode(regs.dev, regs.ino, regs.mtime_ns)
                if known is None:
                    raise NotReady(0)  # a file no process has shown the agent yet: perhaps the next one will
                key, seg_delta, mflags = known
                first = (key, regs.vm_start - (regs.vm_pgoff << 12) - seg_delta, mflags)
                vma = (regs.vm_start, regs.vm_end)
            if first is None:
                return self._as_is(sample, layout.UNWIND_ERR_NO_MAPPING, snapshot)

        def mapping(pc: int) -> tuple[int, int, int] | None:
            if vma is not None and vma[0] <= pc < vma[1]:
                return first
            return self._mapping(pid, pc)

        start = layout.HEADER_SIZE + nk * layout.FRAME_SIZE
        before, calls = split_tail(sample[start : start + nu * layout.FRAME_SIZE])
        nu = len(before) // layout.FRAME_SIZE

        def interp(key: int, elf_pc: int) -> list[tuple[int, ...]] | None:
            return calls.pop(0) if calls and self._eval_loop(key, elf_pc) else None

        room = layout.MAX_FRAMES - nk - nu
        result = replay(regs, stack, first, mapping, self._rules, room, interp)
        pack = layout.FRAME_STRUCT.pack
        frames = b"".join(pack(f[1], f[2], f[4] if len(f) > 4 else 0, f[0], f[3], 0) for f in result.frames)
        flags &= ~layout.SAMPLE_FLAG_DEFERRED
        header = _HDR.pack(
            ktime, pid, tid, cpu, nk, nu + len(result.frames), result.error, flags, tag, labels, comm, pcomm
        )
        return header + sample[layout.HEADER_SIZE : start] + before + frames

    def _as_is(self, sample: bytes, error: int, snapshot: bytes | None = None) -> bytes:
        """The sample as BPF left it, plus the frame it stopped at (so the leaf is never lost)."""
        ktime, pid, tid, cpu, nk, nu, _, flags, tag, labels, comm, pcomm = _HDR.unpack_from(sample)
        start = layout.HEADER_SIZE + nk * layout.FRAME_SIZE
        before, _calls = split_tail(sample[start : start + nu * layout.FRAME_SIZE])
        nu = len(before) // layout.FRAME_SIZE  # the Python tail has no place without the native frames
        end = start + len(before)
        extra = b""
        if snapshot is not None and nk + nu < layout.MAX_FRAMES:
            regs = layout.SnapshotRegs.from_buffer_copy(snapshot, _REGS_OFF)
            if not regs.pushed:
                fflags = layout.FRAME_FLAG_RETURN_ADDRESS if regs.return_address else 0
                if regs.file_id:
                    extra = layout.FRAME_STRUCT.pack(
                        regs.file_id, regs.pc - regs.bias, 0, layout.FRAME_NATIVE, fflags, 0
                    )
                else:
                    extra = layout.FRAME_STRUCT.pack(0, regs.pc, 0, layout.FRAME_NATIVE_RAW, fflags, 0)
        nu += len(extra) // layout.FRAME_SIZE
        header = _HDR.pack(
            ktime,
            pid,
            tid,
            cpu,
            nk,
            nu,
            error,
            flags & ~layout.SAMPLE_FLAG_DEFERRED,
            tag,
            labels,
            comm,
            pcomm,
        )
        return header + sample[layout.HEADER_SIZE : end] + extra

    def _give_up(self, key: Key) -> None:
        entry = self._pending.get(key)
        self._drop(key)
        if entry is not None and entry.sample is not None:
            self.expired += 1
            self._emit(self._as_is(entry.sample, layout.UNWIND_ERR_NOT_READY, entry.snapshot))

    def _drop(self, key: Key) -> None:
        entry = self._pending.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.sample or b"") + len(entry.snapshot or b"")

    def stats(self) -> dict[str, int]:
        """Counters for the profile's stats."""
        return {
            "deferred_finished": self.finished,
            "deferred_expired": self.expired,
            "deferred_pending": len(self._pending),
        }
