"""Unwind-table residency (agent/tables.py) against the real loader's space accounting: tables outlive
their mappings, eviction takes the longest-unmapped then the least recently used, an evicted table comes back
on demand, and only a table bigger than the whole space fails (to frame pointers)."""

from __future__ import annotations

import time
from array import array

from fleetprof.agent.tables import TableManager, TableRequest
from fleetprof.nativeunwind.loader import RangeAllocator, TableSpaceError
from fleetprof.nativeunwind.table import FRAME_POINTER_RULE, STOP_RULE, UnwindStats, UnwindTable


class FakeLoader:
    """TableLoader's interface over the real RangeAllocator, without BPF maps."""

    def __init__(self, rows: int) -> None:
        self._alloc = RangeAllocator(rows)
        self.loaded: dict[int, tuple[int, int]] = {}
        self.no_table: set[int] = set()
        self.unloads: list[int] = []

    def load(self, key: int, table: UnwindTable) -> None:
        if key in self.loaded:
            return
        start = self._alloc.alloc(table.row_count)
        self.loaded[key] = (start, table.row_count)
        self.no_table.discard(key)

    def unload(self, key: int) -> None:
        got = self.loaded.pop(key, None)
        if got is not None:
            self._alloc.free(*got)
            self.unloads.append(key)

    def is_loaded(self, key: int) -> bool:
        return key in self.loaded or key in self.no_table

    def loaded_keys(self) -> list[int]:
        return list(self.loaded)

    def mark_no_table(self, key: int) -> None:
        self.no_table.add(key)

    def find_rule(self, key: int, pc: int):
        if key in self.no_table:
            return FRAME_POINTER_RULE
        if key not in self.loaded:
            raise KeyError(key)
        return STOP_RULE

    def usage(self) -> dict[str, int]:
        return {"unwind_tables": len(self.loaded), "unwind_rows_used": self._alloc.used}


def _table(rows: int) -> UnwindTable:
    words = array("Q", (pc for pc in range(rows)))  # rule 0 everywhere
    return UnwindTable(words, [STOP_RULE], UnwindStats())


class FakeCache:
    """The disk cache: every file's table is already compiled (loads are synchronous)."""

    def __init__(self, sizes: dict[str, int]) -> None:
        self.sizes = sizes

    def cached(self, file_id: str) -> UnwindTable | None:
        return _table(self.sizes[file_id])

    def get(self, path: str, file_id: str) -> UnwindTable:
        return _table(self.sizes[file_id])


def _req(key: int) -> TableRequest:
    return TableRequest(key, f"id{key}", f"/f{key}", f"/f{key}")


def _manager(capacity: int, sizes: dict[int, int]) -> tuple[TableManager, FakeLoader]:
    loader = FakeLoader(capacity)
    cache = FakeCache({f"id{k}": n for k, n in sizes.items()})
    manager = TableManager(loader, cache, in_process=True)  # type: ignore[arg-type]
    return manager, loader


def test_table_outlives_its_last_mapping() -> None:
    manager, loader = _manager(100, {1: 40})
    manager.acquire(_req(1))
    manager.release(1)
    assert manager.state(1) == "ready" and loader.unloads == []
    manager.close()


def test_eviction_takes_unmapped_first_then_least_recently_used() -> None:
    manager, loader = _manager(100, {1: 40, 2: 40, 3: 40, 4: 40})
    for key in (1, 2):
        manager.acquire(_req(key))
    manager.release(2)  # 2 is no longer mapped: it goes first, though 1 is older
    manager.acquire(_req(3))
    assert loader.unloads == [2]
    time.sleep(0.01)
    manager.touch(1)  # 1 sampled just now: 3 is the least recently used mapped table
    manager.acquire(_req(4))
    assert loader.unloads == [2, 3]
    assert sorted(loader.loaded) == [1, 4]
    assert manager.usage()["unwind_tables_evicted"] == 2
    manager.close()


def test_evicted_table_comes_back_on_demand() -> None:
    manager, _ = _manager(100, {1: 60, 2: 60})
    manager.acquire(_req(1))
    manager.acquire(_req(2))  # evicts 1
    assert manager.state(1) == "evicted"
    assert manager.ensure_loaded(1)  # a deferred sample needs it again: 2 makes room
    assert manager.state(1) == "ready" and manager.state(2) == "evicted"
    assert not manager.ensure_loaded(99)  # never asked for: nothing to load
    manager.close()


def test_only_a_table_larger_than_the_space_fails() -> None:
    manager, loader = _manager(100, {1: 60, 2: 150})
    manager.acquire(_req(1))
    manager.acquire(_req(2))
    assert loader.no_table == {2}  # BPF walks it by frame pointers instead of waiting
    assert manager.find_rule(2, 0x10) == FRAME_POINTER_RULE
    assert len(manager.messages) == 1 and "/f2: no unwind table" in manager.messages[0]
    assert manager.usage()["unwind_tables_failed"] == 1
    manager.close()


def test_allocator_refuses_what_does_not_fit() -> None:
    alloc = RangeAllocator(10)
    alloc.alloc(6)
    try:
        alloc.alloc(5)
    except TableSpaceError as exc:
        assert "no 5 free rows (capacity 10)" in str(exc)
    else:
        raise AssertionError("5 rows fit in 4")


def test_an_evicted_table_still_answers_rules_from_the_disk_cache() -> None:
    """Samples that waited for a table evicted meanwhile (two programs taking turns in too little space) are
    finished from the cached copy: the replay does not need the kernel's."""
    manager, loader = _manager(100, {1: 60, 2: 60})
    manager.acquire(_req(1))
    manager.acquire(_req(2))  # evicts 1
    assert 1 not in loader.loaded
    assert manager.find_rule(1, 0x10) == STOP_RULE
    try:
        manager.find_rule(99, 0x10)  # never asked for: nothing to read
    except KeyError:
        pass
    else:
        raise AssertionError("an unknown file has no rules")
    manager.close()
