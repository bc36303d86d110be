"""Long-running upkeep of the profiler core: exited processes' state freed one window after they exit, files
no process maps any more unpinned and forgotten by the table manager, file_inodes kept under its bound,
known_pids marks of processes gone before their maps were read removed, python frames of gone processes
dropped."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_agent_tables import _manager, _req

from fleetprof.agent import core as core_module
from fleetprof.agent.core import CoreOptions, ProfilerCore
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.files import FileStatus
from fleetprof.process.maps import MapKind
from fleetprof.process.tracker import ExecMapping, ProcessInfo
from fleetprof.symbolize.native import NativeFile

LIBC, APP, TOOL = "11" * 16, "22" * 16, "33" * 16


def mapping(file_id: str, start: int) -> ExecMapping:
    return ExecMapping(
        start=start,
        end=start + 0x1000,
        perms="r-xp",
        offset=0,
        dev=0,
        inode=0,
        path=f"/lib/{file_id[:4]}",
        deleted=False,
        kind=MapKind.FILE,
        status=FileStatus.OK,
        file_id=file_id,
    )


@dataclass
class FakeTracker:
    procs: dict[int, tuple[str, ...]] = field(default_factory=dict)  # pid -> mapped file ids
    unpinned: list[str] = field(default_factory=list)
    swept: list[int] = field(default_factory=list)

    def pids(self) -> list[int]:
        return sorted(self.procs)

    def process(self, pid: int) -> ProcessInfo | None:
        if pid not in self.procs:
            return None
        maps = tuple(mapping(fid, 0x1000 * (i + 1)) for i, fid in enumerate(self.procs[pid]))
        return ProcessInfo(pid, 1, 1, "x", "", "", maps)

    def unpin(self, file_id: str) -> None:
        self.unpinned.append(file_id)

    def sweep(self) -> list[int]:
        return self.swept

    def close(self) -> None:
        pass


class FakeTables:
    def __init__(self) -> None:
        self.forgotten: set[int] = set()

    def forget(self, keys: set[int]) -> None:
        self.forgotten |= keys


class FakeInodes:
    def __init__(self, entries: dict[int, int]) -> None:
        self.entries = entries  # inode -> file key
        self.removed: set[int] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def remove_files(self, keys: set[int]) -> None:
        self.removed |= keys
        self.entries = {i: k for i, k in self.entries.items() if k not in keys}


class FakeMapsync:
    def __init__(self) -> None:
        self.removed: list[int] = []

    def mark_known(self, pid: int) -> None:
        pass

    def remove_pid(self, pid: int) -> None:
        self.removed.append(pid)


class FakeTrackerRescan(FakeTracker):
    def rescan(self, pid: int) -> None:
        return None

    def lookup(self, pid: int, addr: int) -> None:
        return None


@pytest.fixture
def core(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLEETPROF_CACHE_DIR", str(tmp_path))
    c = ProfilerCore(CoreOptions(cache_dir=tmp_path))
    c.tracker.close()
    c.tracker = FakeTrackerRescan()  # type: ignore[assignment]
    c._tables = FakeTables()  # type: ignore[assignment]
    yield c


def add_process(c: ProfilerCore, pid: int, *file_ids: str) -> None:
    c.tracker.procs[pid] = file_ids  # type: ignore[attr-defined]
    maps = [mapping(fid, 0x1000 * (i + 1)) for i, fid in enumerate(file_ids)]
    c._history.setdefault(pid, []).extend(maps)
    c._containers[pid] = ""
    for m in maps:
        key = file_id_u64(m.file_id)
        c.files[key] = NativeFile(m.file_id, m.path)
        c._models[(pid, key)] = m.to_model()
        c._pinned.add(m.file_id)


def test_exited_process_state_goes_one_window_later(core: ProfilerCore) -> None:
    add_process(core, 10, LIBC, APP)
    add_process(core, 11, LIBC, TOOL)
    del core.tracker.procs[11]  # type: ignore[attr-defined]  # 11 exits
    core.release_exited()
    assert 11 in core._history and core.lookup_mapping(11, 0x2000) is not None  # its window is still open
    assert core.tracker.unpinned == []  # type: ignore[attr-defined]
    core.release_exited()
    assert 11 not in core._history and 11 not in core._containers
    assert not any(pid == 11 for pid, _ in core._models)
    assert core.tracker.unpinned == [TOOL]  # type: ignore[attr-defined]  # libc is still mapped by 10
    assert core._pinned == {LIBC, APP}
    assert file_id_u64(TOOL) not in core.files
    assert core._tables.forgotten == {file_id_u64(TOOL)}  # type: ignore[union-attr]
    assert core.upkeep_stats()["tracked_pids"] == 1


def test_a_file_mapped_again_within_the_grace_stays_pinned(core: ProfilerCore) -> None:
    add_process(core, 10, LIBC)
    add_process(core, 11, TOOL)
    del core.tracker.procs[11]  # type: ignore[attr-defined]
    core.release_exited()
    add_process(core, 12, TOOL)  # the same tool runs again
    core.release_exited()
    core.release_exited()
    assert core.tracker.unpinned == []  # type: ignore[attr-defined]


def test_inodes_of_unpinned_files_go_past_the_soft_limit(
    core: ProfilerCore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core_module, "INODE_SOFT_LIMIT", 1)
    add_process(core, 10, LIBC)
    add_process(core, 11, TOOL)
    inodes = FakeInodes({1: file_id_u64(LIBC), 2: file_id_u64(TOOL)})
    core._inodes = inodes  # type: ignore[assignment]
    del core.tracker.procs[11]  # type: ignore[attr-defined]
    core.release_exited()
    core.release_exited()
    assert inodes.removed == {file_id_u64(TOOL)}
    assert list(inodes.entries) == [1]


def test_process_gone_before_its_maps_were_read_leaves_no_known_mark(core: ProfilerCore) -> None:
    mapsync = FakeMapsync()
    core._mapsync = mapsync  # type: ignore[assignment]
    core._rescan_pid(4242)
    assert mapsync.removed == [4242]


def test_sweep_counts_processes_whose_exit_was_lost(core: ProfilerCore) -> None:
    core.tracker.swept = [5, 6]  # type: ignore[attr-defined]
    assert core.sweep() == 2


def test_table_manager_forgets_unmapped_files_but_keeps_loaded_tables() -> None:
    manager, loader = _manager(100, {1: 40, 2: 40, 3: 40})
    manager.acquire(_req(1))
    manager.acquire(_req(2))
    manager.release(1)
    manager.forget({1, 2})  # 2 is still mapped: not forgotten
    assert manager.state(1) == "ready"  # the loaded table stays
    assert 1 not in manager._requests and 2 in manager._requests
    manager.acquire(_req(3))  # needs room: 1 is evicted although nothing remembers its request
    assert 1 in loader.unloads
    assert manager.state(1) == "unknown"
    again = _req(1)
    manager.acquire(again)
    assert manager._requests[1] is again  # asked again with a fresh path
    manager.close()
