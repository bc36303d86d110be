"""The agent's per-window work stays proportional to what is new: a stack counted in an earlier window is not
handed to `on_new_stack` again until SEEN_S has passed, and the raw stage's per-window memos still resolve
frames per process (the same frame bytes in two processes name two mappings); an exit costs no syscall for a
pid the agent never marked known."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fleetprof.agent.raw import RawProfileBuilder
from fleetprof.profile.model import FrameKind, Mapping
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import SEEN_LIMIT, SEEN_S, Aggregator, StackKey
from fleetprof.tracer.mapsync import MappingsMap, MappingValue

KALLSYMS = "ffffffff80000000 T _stext\nffffffff81000000 T do_syscall_64\nffffffff81000100 T _etext\n"


def _record(pid: int, frames: list[tuple[int, int, int]], tid: int = 0, comm: bytes = b"w") -> bytes:
    """One sample record: frames are (file key, address, kind), kernel frames first."""
    nk = sum(1 for f in frames if f[2] == layout.FRAME_KERNEL)
    hdr = layout.HEADER_STRUCT.pack(
        5, pid, tid or pid, 0, nk, len(frames) - nk, layout.UNWIND_COMPLETE, 0, 0, 0, comm, b"srv"
    )
    return hdr + b"".join(layout.FRAME_STRUCT.pack(k, a, 0, kind, 0, 0) for k, a, kind in frames)


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _aggregator() -> tuple[Aggregator, list[StackKey], _Clock]:
    clock = _Clock()
    agg = Aggregator(clock=clock)
    seen: list[StackKey] = []
    agg.on_new_stack = seen.append
    return agg, seen, clock


def test_a_recurring_stack_is_new_once_per_seen_period() -> None:
    agg, seen, clock = _aggregator()
    rec = _record(7, [(1, 0x1000, layout.FRAME_NATIVE)])
    agg.add_bytes(rec)
    agg.add_bytes(rec)
    assert len(seen) == 1
    first = agg.cut()
    assert sum(c.count for c in first.values()) == 2 and agg.stacks == {} and agg.samples == 0
    for _ in range(3):  # windows within SEEN_S: counted each time, not new again
        clock.now += 5.0
        agg.add_bytes(rec)
        assert agg.samples == 1 and agg.pids == {7}
        assert sum(c.count for c in agg.cut().values()) == 1
    assert len(seen) == 1
    agg.add_bytes(_record(7, [(1, 0x2000, layout.FRAME_NATIVE)]))  # a different stack is new
    assert len(seen) == 2
    clock.now += SEEN_S
    agg.cut()
    agg.add_bytes(rec)  # past SEEN_S: every stack is new once more
    assert len(seen) == 3


def test_the_seen_set_is_bounded() -> None:
    agg, seen, _ = _aggregator()
    rec = _record(1, [(0, 0, layout.FRAME_NATIVE)])
    agg.add_bytes(rec)
    agg.cut()
    agg.add_bytes(rec)
    assert len(seen) == 1  # remembered while the set is small
    for i in range(SEEN_LIMIT):
        agg.stacks[StackKey(1, 1, b"", b"", 0, 0, 0, i.to_bytes(8, "little"))] = None  # type: ignore[assignment]
    agg.cut()  # over the bound: forgotten rather than kept
    agg.add_bytes(rec)
    assert len(seen) == 2


@dataclass
class _Options:
    frequency_hz: int = 20


@dataclass
class _Core:
    aggregator: Aggregator
    models: dict[int, Mapping]
    files: dict[int, object] = field(default_factory=dict)
    options: _Options = field(default_factory=_Options)
    own_pid: int = -1
    started_ns: int = 1
    stopped_ns: int = 2

    def mapping_model(self, pid: int, file_key: int) -> Mapping | None:
        return self.models.get(pid)

    def container_id(self, pid: int) -> str:
        return f"c{pid}"

    def anonymous_name(self, pid: int, addr: int) -> str:
        return "[jit]"

    def stats(self) -> dict[str, int]:
        return {}


def test_raw_frames_are_memoized_per_process(tmp_path: Path) -> None:
    agg = Aggregator()
    frames = [(0, 0xFFFFFFFF81000010, layout.FRAME_KERNEL), (5, 0x401000, layout.FRAME_NATIVE)]
    agg.add_bytes(_record(10, frames, tid=11, comm=b"a"))
    agg.add_bytes(_record(10, frames, tid=12, comm=b"b"))
    agg.add_bytes(_record(20, frames))
    one, two = Mapping(file_id="1" * 32, path="/bin/one"), Mapping(file_id="2" * 32, path="/bin/two")
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text(KALLSYMS)
    builder = RawProfileBuilder(
        _Core(agg, {10: one, 20: two}),
        kernel=KernelSymbols.load(str(kallsyms), str(tmp_path / "modules")),
        resource={},
    )
    profile = builder.build()
    by_tid = {s.tid: s for s in profile.samples}
    assert set(by_tid) == {11, 12, 20}
    assert [f.kind for f in by_tid[11].stack] == [FrameKind.PROCESS, FrameKind.NATIVE, FrameKind.KERNEL]
    assert by_tid[11].stack[1].mapping is one and by_tid[12].stack[1].mapping is one
    assert by_tid[20].stack[1].mapping is two and by_tid[20].container_id == "c20"
    assert by_tid[11].thread_name == "a" and by_tid[12].thread_name == "b"
    assert by_tid[11].stack[1].address == 0x401000
    assert by_tid[11].stack[2].function == "do_syscall_64"


def test_the_agent_builds_without_reading_the_core_counters(tmp_path: Path) -> None:
    class _Counting(_Core):
        reads = 0

        def stats(self) -> dict[str, int]:
            _Counting.reads += 1
            return {"samples": 1}

    agg = Aggregator()
    agg.add_bytes(_record(10, [(5, 0x401000, layout.FRAME_NATIVE)]))
    builder = RawProfileBuilder(_Counting(agg, {}), kernel=KernelSymbols.load("/nonexistent"), resource={})
    assert builder.build().stats == {"samples": 1} and _Counting.reads == 1
    builder.with_stats = False  # the agent: each window's stats delta replaces them
    assert builder.build().stats == {} and _Counting.reads == 1


class _FakeMap:
    def __init__(self) -> None:
        self.items: dict[bytes, bytes] = {}
        self.deletes = 0

    def update(self, key: bytes, value: bytes) -> None:
        self.items[key] = value

    def delete(self, key: bytes) -> bool:
        self.deletes += 1
        return self.items.pop(key, None) is not None


def test_an_exit_of_a_pid_never_marked_costs_no_syscall() -> None:
    mappings, known = _FakeMap(), _FakeMap()
    sync = MappingsMap(mappings, known)  # type: ignore[arg-type]
    sync.remove_pid(300)  # a short-lived process the agent never read
    assert known.deletes == 0
    sync.mark_known(301)
    sync.add(301, 0x1000, 0x3000, MappingValue(1, 0, 0))
    sync.remove_pid(301)
    assert known.items == {} and known.deletes == 1 and mappings.items == {} and sync.entries == 0
    sync.remove_pid(301)  # twice (exit after a failed rescan): the mark is gone already
    assert known.deletes == 1
