"""The unwind-table compile queue serves the smallest file first, the stop marker before everything."""

from __future__ import annotations

from pathlib import Path

from fleetprof.agent.tables import TableRequest, _SmallestFirst


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
