"""Deferred samples (agent/deferred.py) and exec-window samples (agent/execwindow.py), from hand-built
records: paired with their snapshots in either order, held while a table loads, finished, and never lost."""

from __future__ import annotations

import struct

import pytest

from fleetprof.agent import deferred as deferred_mod
from fleetprof.agent.deferred import DeferredStacks
from fleetprof.agent.execwindow import ExecWindow
from fleetprof.nativeunwind.table import STOP_RULE, UW_CFA_RSP, UW_RBP_SAME
from fleetprof.tracer import layout

PID, TID, CPU, KTIME = 4242, 4243, 1, 123_456_789
EXE, LIBC = 0xE0E0, 0x11BC
RSP8 = (UW_CFA_RSP, UW_RBP_SAME, 8, 0, 0, *STOP_RULE[5:])  # CFA = rsp + 8, the return address below it


def _header(nk: int, nu: int, error: int, flags: int) -> bytes:
    return layout.HEADER_STRUCT.pack(KTIME, PID, TID, CPU, nk, nu, error, flags, 0, 0, b"prog", b"prog")


def _frame(kind: int, fid: int, addr: int, flags: int = 0) -> bytes:
    return layout.FRAME_STRUCT.pack(fid, addr, 0, kind, flags, 0)


KERNEL = _frame(layout.FRAME_KERNEL, 0, 0xFFFFFFFF81000010)


def _deferred_sample() -> bytes:
    """One kernel frame, no user frame yet: BPF stopped at the first user pc."""
    flags = layout.SAMPLE_FLAG_DEFERRED | layout.SAMPLE_FLAG_IN_KERNEL
    return _header(1, 0, layout.UNWIND_ERR_NOT_READY, flags) + KERNEL


def _snapshot(pc: int = 0x5000_1010, sp: int = 0x7FF0_0000, *, file_id: int = 0, bias: int = 0) -> bytes:
    """Registers at the exe's leaf, its return address into libc, then libc's return address 0 (the end)."""
    regs = layout.SnapshotRegs(pc=pc, sp=sp, fp=0, file_id=file_id, bias=bias)
    stack = struct.pack("<QQ", 0x7000_2020, 0)
    regs.stack_size = len(stack)
    return _header(0, 0, 0, layout.SAMPLE_FLAG_SNAPSHOT) + bytes(regs) + stack


class World:
    """What the agent knows: mappings, which tables are loaded, the emitted records."""

    def __init__(self) -> None:
        self.loaded = {EXE, LIBC}
        self.scanned = True
        self.wanted: list[int] = []
        self.out: list[bytes] = []
        self.mappings = {EXE: (0x5000_0000, 0x5001_0000), LIBC: (0x7000_0000, 0x7010_0000)}

    def mapping(self, pid: int, pc: int) -> tuple[int, int, int] | None:
        for key, (lo, hi) in self.mappings.items():
            if lo <= pc < hi:
                return key, lo, layout.MAPPING_FLAG_HAS_TABLE
        return None

    def rules(self, key: int, elf_pc: int):
        if key not in self.loaded:
            raise KeyError(key)
        return RSP8

    def stacks(self) -> DeferredStacks:
        return DeferredStacks(
            emit=self.out.append,
            mapping=self.mapping,
            inode=lambda dev, ino, mtime: None,
            rules=self.rules,
            want_table=self.wanted.append,
            pid_ready=lambda pid: self.scanned,
        )


def _user_frames(record: bytes) -> tuple[int, list[tuple[int, int, int]]]:
    _, _, _, _, nk, nu, error, flags, *_ = layout.HEADER_STRUCT.unpack_from(record)
    assert not flags & (layout.SAMPLE_FLAG_DEFERRED | layout.SAMPLE_FLAG_SNAPSHOT)
    frames = list(layout.FRAME_STRUCT.iter_unpack(record[layout.HEADER_SIZE :]))
    assert len(frames) == nk + nu
    assert frames[0][3] == layout.FRAME_KERNEL  # the kernel frames stay in front
    return error, [(kind, fid, addr) for fid, addr, _, kind, _, _ in frames[nk:]]


WHOLE = [(layout.FRAME_NATIVE, EXE, 0x1010), (layout.FRAME_NATIVE, LIBC, 0x2020)]


@pytest.mark.parametrize("snapshot_first", [False, True])
def test_sample_and_snapshot_pair_up_and_finish(snapshot_first: bool) -> None:
    world = World()
    stacks = world.stacks()
    parts = [_deferred_sample(), _snapshot()]
    for part in reversed(parts) if snapshot_first else parts:
        stacks.add(part, layout.HEADER_STRUCT.unpack_from(part)[7])
    assert len(stacks) == 1
    stacks.resolve()
    assert len(stacks) == 0
    assert len(world.out) == 1
    assert _user_frames(world.out[0]) == (layout.UNWIND_COMPLETE, WHOLE)
    assert stacks.stats() == {"deferred_finished": 1, "deferred_expired": 0, "deferred_pending": 0}


def test_held_until_the_table_loads_then_finished() -> None:
    world = World()
    world.loaded = {EXE}
    stacks = world.stacks()
    stacks.add(_deferred_sample(), layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(_snapshot(), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve()
    assert world.out == [] and len(stacks) == 1
    assert world.wanted == [LIBC]  # the table it waits for is asked for
    world.loaded.add(LIBC)
    stacks.resolve()
    assert _user_frames(world.out[0]) == (layout.UNWIND_COMPLETE, WHOLE)


def test_waits_for_the_maps_of_a_process_being_scanned() -> None:
    world = World()
    world.scanned = False
    stacks = world.stacks()
    stacks.add(_deferred_sample(), layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(_snapshot(), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve()
    assert world.out == []
    world.scanned = True
    stacks.resolve()
    assert _user_frames(world.out[0])[0] == layout.UNWIND_COMPLETE


def test_first_frame_from_the_kernels_mapping() -> None:
    """When BPF knew the file (its table was missing), the snapshot's own file id and bias are used and the
    frame BPF already pushed is not repeated."""
    world = World()
    stacks = world.stacks()
    pushed = _header(1, 1, layout.UNWIND_ERR_NOT_READY, layout.SAMPLE_FLAG_DEFERRED) + KERNEL
    pushed += _frame(layout.FRAME_NATIVE, EXE, 0x1010)
    snap = bytearray(_snapshot(file_id=EXE, bias=0x5000_0000))
    regs = layout.SnapshotRegs.from_buffer(snap, layout.HEADER_SIZE)
    regs.pushed = 1
    stacks.add(pushed, layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(bytes(snap), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve()
    assert _user_frames(world.out[0]) == (layout.UNWIND_COMPLETE, WHOLE)


def test_never_lost_the_leaf_stays_when_giving_up() -> None:
    """At the end, a sample whose table never came is counted with the frame it stopped at."""
    world = World()
    world.loaded = set()
    stacks = world.stacks()
    stacks.add(_deferred_sample(), layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(_snapshot(), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve(final=True)
    error, frames = _user_frames(world.out[0])
    assert error == layout.UNWIND_ERR_NOT_READY
    assert frames == [(layout.FRAME_NATIVE_RAW, 0, 0x5000_1010)]
    assert stacks.stats()["deferred_expired"] == 1


def test_lost_snapshot_counts_the_sample_as_it_came() -> None:
    world = World()
    stacks = world.stacks()
    stacks.add(_deferred_sample(), layout.SAMPLE_FLAG_DEFERRED)
    stacks.resolve()
    assert world.out == []  # the snapshot may still be on its way
    stacks.resolve(final=True)
    error, frames = _user_frames(world.out[0])
    assert (error, frames) == (layout.UNWIND_ERR_NOT_READY, [])


def test_memory_bound_gives_up_the_oldest(monkeypatch: pytest.MonkeyPatch) -> None:
    world = World()
    world.loaded = set()
    stacks = world.stacks()
    pair = len(_deferred_sample()) + len(_snapshot())
    monkeypatch.setattr(deferred_mod, "MAX_BYTES", 2 * pair + 10)  # room for two pairs
    for i in range(4):
        sample = bytearray(_deferred_sample())
        struct.pack_into("<Q", sample, 0, KTIME + i)
        snap = bytearray(_snapshot())
        struct.pack_into("<Q", snap, 0, KTIME + i)
        stacks.add(bytes(sample), layout.SAMPLE_FLAG_DEFERRED)
        stacks.add(bytes(snap), layout.SAMPLE_FLAG_SNAPSHOT)
    assert len(world.out) == 2  # two pairs no longer fit: the oldest are counted as they came
    assert [layout.HEADER_STRUCT.unpack_from(r)[0] for r in world.out] == [KTIME, KTIME + 1]
    assert len(stacks) == 2


def test_unknown_first_file_waits_for_another_process_to_show_it() -> None:
    """A vma whose file no process has shown yet: held (the next run of the program may), then, if
    nothing comes, counted with `no mapping`."""
    world = World()
    stacks = world.stacks()
    snap = bytearray(_snapshot(pc=0x6000_0010))
    regs = layout.SnapshotRegs.from_buffer(snap, layout.HEADER_SIZE)
    regs.dev, regs.ino, regs.vm_start = 0x800001, 77, 0x6000_0000
    stacks.add(_deferred_sample(), layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(bytes(snap), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve()
    assert world.out == [] and world.wanted == []
    stacks.resolve(final=True)
    error, frames = _user_frames(world.out[0])
    assert error == layout.UNWIND_ERR_NO_MAPPING
    assert frames == [(layout.FRAME_NATIVE_RAW, 0, 0x6000_0010)]


# ---- the Python tail: frames BPF walked after deferring take the places of their eval-loop frames -------

EVAL = 0xE7A1  # a libpython: its eval loop at ELF [0x100, 0x200)
TAIL = layout.FRAME_FLAG_TAIL
END = layout.FRAME_FLAG_TAIL | layout.FRAME_FLAG_CALL_END


def _py(code: int, lasti: int, flags: int) -> bytes:
    return layout.FRAME_STRUCT.pack(code, lasti, 0xC0DE + code, layout.FRAME_PYTHON, flags, 0)


def _eval_world() -> tuple[World, DeferredStacks]:
    world = World()
    world.mappings[EVAL] = (0x6000_0000, 0x6001_0000)
    world.loaded.add(EVAL)
    stacks = DeferredStacks(
        emit=world.out.append,
        mapping=world.mapping,
        inode=lambda dev, ino, mtime: None,
        rules=world.rules,
        want_table=world.wanted.append,
        pid_ready=lambda pid: True,
        eval_loop=lambda key, pc: key == EVAL and 0x100 <= pc < 0x200,
    )
    return world, stacks


def _stack_snapshot(returns: list[int]) -> bytes:
    """The exe's leaf, then every return address in `returns` (each frame CFA = sp + 8), then the end."""
    regs = layout.SnapshotRegs(pc=0x5000_1010, sp=0x7FF0_0000, fp=0)
    stack = struct.pack(f"<{len(returns) + 1}Q", *returns, 0)
    regs.stack_size = len(stack)
    return _header(0, 0, 0, layout.SAMPLE_FLAG_SNAPSHOT) + bytes(regs) + stack


def _finished(tail: list[bytes], returns: list[int]) -> tuple[int, list[tuple[int, int, int, int, int]]]:
    world, stacks = _eval_world()
    sample = _header(1, len(tail), layout.UNWIND_ERR_NOT_READY, layout.SAMPLE_FLAG_DEFERRED) + KERNEL
    stacks.add(sample + b"".join(tail), layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(_stack_snapshot(returns), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve()
    _, _, _, _, nk, nu, error, *_ = layout.HEADER_STRUCT.unpack_from(world.out[0])
    frames = list(layout.FRAME_STRUCT.iter_unpack(world.out[0][layout.HEADER_SIZE :]))[nk:]
    assert len(frames) == nu
    return error, [(kind, fid, addr, aux, fflags) for fid, addr, aux, kind, fflags, _ in frames]


def _native(key: int, addr: int) -> tuple[int, int, int, int, int]:
    return (layout.FRAME_NATIVE, key, addr, 0, layout.FRAME_FLAG_RETURN_ADDRESS)


def _python(code: int, lasti: int) -> tuple[int, int, int, int, int]:
    return (layout.FRAME_PYTHON, code, lasti, 0xC0DE + code, 0)


def test_python_tail_takes_the_places_of_the_eval_loop_frames() -> None:
    """exe leaf > eval call (2 Python frames) > C in libpython > eval call (1 frame) > libc: each call's
    frames where its eval-loop frame is, the native frame between them kept, the tail flags cleared."""
    tail = [_py(0xA, 1, TAIL), _py(0xB, 2, END), _py(0xC, 3, END)]
    error, frames = _finished(tail, [0x6000_0150, 0x6000_0900, 0x6000_0180, 0x7000_2020])
    leaf = (layout.FRAME_NATIVE, EXE, 0x1010, 0, 0)
    middle = _native(EVAL, 0x900)
    expected = [leaf, _python(0xA, 1), _python(0xB, 2), middle, _python(0xC, 3), _native(LIBC, 0x2020)]
    assert (error, frames) == (layout.UNWIND_COMPLETE, expected)


def test_python_tail_shorter_than_the_eval_loop_frames_leaves_the_rest_native() -> None:
    """The kernel's walk ended early (a torn frame): later eval-loop frames stay the native frames they
    are, and a call cut short still names its inner frames."""
    error, frames = _finished([_py(0xA, 1, TAIL)], [0x6000_0150, 0x6000_0180, 0x7000_2020])
    expected = [(layout.FRAME_NATIVE, EXE, 0x1010, 0, 0), _python(0xA, 1), _native(EVAL, 0x180)]
    assert (error, frames) == (layout.UNWIND_COMPLETE, [*expected, _native(LIBC, 0x2020)])


def test_python_tail_dropped_when_the_table_never_comes() -> None:
    """Given up: without the native frames the tail has no place; the sample keeps its leaf, as before."""
    world, stacks = _eval_world()
    world.loaded = set()
    sample = (
        _header(1, 1, layout.UNWIND_ERR_NOT_READY, layout.SAMPLE_FLAG_DEFERRED) + KERNEL + _py(0xA, 1, END)
    )
    stacks.add(sample, layout.SAMPLE_FLAG_DEFERRED)
    stacks.add(_snapshot(), layout.SAMPLE_FLAG_SNAPSHOT)
    stacks.resolve(final=True)
    assert _user_frames(world.out[0]) == (
        layout.UNWIND_ERR_NOT_READY,
        [(layout.FRAME_NATIVE_RAW, 0, 0x5000_1010)],
    )


EXEC_LO, EXEC_HI = 0xFFFFFFFF81200000, 0xFFFFFFFF81200400


def test_exec_window_keeps_kernel_frames_only() -> None:
    window = ExecWindow([(EXEC_LO, EXEC_HI)])
    inside = _frame(layout.FRAME_KERNEL, 0, EXEC_LO + 0x40)
    user = _frame(layout.FRAME_NATIVE, LIBC, 0x2020)
    record = (
        _header(2, 1, layout.UNWIND_ERR_READ_FAILED, layout.SAMPLE_FLAG_IN_KERNEL) + KERNEL + inside + user
    )
    fixed = window.rewrite(record)
    assert fixed is not None
    _, _, _, _, nk, nu, error, flags, *_ = layout.HEADER_STRUCT.unpack_from(fixed)
    assert (nk, nu, error) == (2, 0, layout.UNWIND_COMPLETE)
    assert flags == layout.SAMPLE_FLAG_IN_KERNEL | layout.SAMPLE_FLAG_EXECING
    assert fixed[layout.HEADER_SIZE :] == KERNEL + inside


def test_exec_window_leaves_other_samples_alone() -> None:
    window = ExecWindow([(EXEC_LO, EXEC_HI)])
    user = _frame(layout.FRAME_NATIVE, LIBC, 0x2020)
    outside = _header(1, 1, layout.UNWIND_ERR_READ_FAILED, layout.SAMPLE_FLAG_IN_KERNEL) + KERNEL + user
    assert window.rewrite(outside) is None  # failed, but not in execve
    inside = _frame(layout.FRAME_KERNEL, 0, EXEC_LO)
    whole = _header(1, 1, layout.UNWIND_COMPLETE, layout.SAMPLE_FLAG_IN_KERNEL) + inside + user
    assert window.rewrite(whole) is None  # in execve before the point of no return, unwound fine
    assert ExecWindow([]).rewrite(outside) is None  # kernel addresses hidden: nothing to judge by
