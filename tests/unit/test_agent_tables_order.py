"""The unwind-table compile queues serve the smallest file first, the stop marker before everything, and a
tiny file in a lane of its own."""

from __future__ import annotations

import threading
import time
from array import array
from pathlib import Path

from fleetprof.agent.tables import TableManager, TableRequest, _SmallestFirst
from fleetprof.nativeunwind.table import STOP_RULE, UnwindStats, UnwindTable
from tests.unit.test_agent_tables import FakeLoader


def _req(path: Path, key: int) -> TableRequest:
    return TableRequest(key, f"{key:032x}", str(path), str(path))


def test_small_files_compile_before_big_ones(tmp_path: Path) -> None:
    big, small, mid = tmp_path / "big", tmp_path / "small", tmp_path / "mid"
    big.write_bytes(b"x" * 100_000)
    small.write_bytes(b"x" * 10)
    mid.write_bytes(b"x" * 1_000)
    q = _SmallestFirst()
    for key, path in enumerate((big, tmp_path / "gone", small, mid)):
        q.put(_req(path, key))
    assert [q.get().file_key for _ in range(4)] == [2, 3, 0, 1]  # an unreadable file goes last
    q.put(_req(small, 5))
    q.put(None)
    assert q.get() is None


class _BlockingCache:
    """A disk cache that holds nothing: every table compiles, the big file's until `release` is set."""

    def __init__(self, big_id: str) -> None:
        self.big_id = big_id
        self.release = threading.Event()

    def cached(self, file_id: str) -> UnwindTable | None:
        return None

    def get(self, path: str, file_id: str) -> UnwindTable:
        if file_id == self.big_id:
            self.release.wait(10)
        return UnwindTable(array("Q", [0]), [STOP_RULE], UnwindStats())


def test_a_tiny_file_never_waits_behind_a_compiling_library(tmp_path: Path) -> None:
    """A C extension imported while libpython's table compiles gets its own table at once."""
    big, tiny = tmp_path / "libbig.so", tmp_path / "_json.so"
    big.write_bytes(b"x" * (2 << 20))
    tiny.write_bytes(b"x" * 4096)
    cache = _BlockingCache(f"{1:032x}")
    loader = FakeLoader(1000)
    manager = TableManager(loader, cache, in_process=True)  # type: ignore[arg-type]
    try:
        manager.acquire(_req(big, 1))
        manager.acquire(_req(tiny, 2))
        deadline = time.monotonic() + 5
        while manager.state(2) != "ready" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert manager.state(2) == "ready" and manager.state(1) == "pending"
    finally:
        cache.release.set()
        manager.close()
