"""The on-disk table cache: hits, version invalidation, corrupt entries, cached failures, atomic writes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from fleetprof.nativeunwind import cache as cache_mod
from fleetprof.nativeunwind.cache import CACHE_VERSION, UnwindTableCache
from fleetprof.nativeunwind.compiler import compile_unwind_table
from fleetprof.nativeunwind.errors import UnwindTableError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "nativeunwind"


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not shutil.which("gcc"):
        pytest.skip("needs gcc")
    out = tmp_path_factory.mktemp("cachebin") / "chain"
    subprocess.run(["gcc", "-O2", "-o", str(out), str(FIXTURES / "chain.c")], check=True)
    return str(out)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every real compile the cache asks for."""
    calls: list[str] = []
    real = cache_mod.compile_unwind_table

    def spy(path: str, debug_path: str | None = None):
        calls.append(path)
        return real(path, debug_path)

    monkeypatch.setattr(cache_mod, "compile_unwind_table", spy)
    return calls


def test_hit_returns_the_same_table(tmp_path, binary, counting):
    cache = UnwindTableCache(tmp_path / "c")
    first = cache.get(binary, "abc123")
    second = cache.get(binary, "abc123")
    assert counting == [binary]
    assert second.rows == first.rows and second.rules == first.rules
    assert second.stats.to_dict() == first.stats.to_dict()
    assert second.rows_bytes() == first.rows_bytes() and second.rules_bytes() == first.rules_bytes()
    assert cache.counters.hits == 1 and cache.counters.compiled == 1
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["abc123.uwt"], "no temporary files left behind"


def test_version_change_invalidates(tmp_path, binary, counting):
    UnwindTableCache(tmp_path, version=CACHE_VERSION).get(binary, "f1")
    newer = UnwindTableCache(tmp_path, version=CACHE_VERSION + 1)
    newer.get(binary, "f1")
    newer.get(binary, "f1")
    assert len(counting) == 2
    assert newer.counters.rejected == 1 and newer.counters.hits == 1


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:10],
        lambda b: b[: len(b) // 2],
        lambda b: b[:40] + bytes([b[40] ^ 0xFF]) + b[41:],
        lambda b: b"JUNKJUNK" + b[8:],
        lambda b: b"",
    ],
)
def test_corrupt_entry_recompiles(tmp_path, binary, counting, damage):
    cache = UnwindTableCache(tmp_path)
    good = cache.get(binary, "f2")
    entry = cache.entry_path("f2")
    entry.write_bytes(damage(entry.read_bytes()))
    again = cache.get(binary, "f2")
    assert again.rows == good.rows
    assert len(counting) == 2 and cache.counters.rejected == 1
    assert cache.get(binary, "f2").rows == good.rows and len(counting) == 2, "the rewritten entry is good"


def test_failures_are_cached(tmp_path, counting):
    bad = tmp_path / "not-elf"
    bad.write_text("plain text, certainly not an ELF file, long enough for a header\n")
    cache = UnwindTableCache(tmp_path / "c")
    for _ in range(2):
        with pytest.raises(UnwindTableError, match="not an ELF file"):
            cache.get(str(bad), "bad")
    assert len(counting) == 1


def test_unreadable_files_are_not_cached(tmp_path, binary, counting):
    cache = UnwindTableCache(tmp_path / "c")
    missing = tmp_path / "later"
    with pytest.raises(UnwindTableError, match="cannot open"):
        cache.get(str(missing), "later")
    missing.write_bytes(Path(binary).read_bytes())
    assert cache.get(str(missing), "later").row_count == compile_unwind_table(binary).row_count
    assert len(counting) == 2


def test_unsafe_file_ids_are_hashed(tmp_path):
    cache = UnwindTableCache(tmp_path)
    path = cache.entry_path("../../etc/passwd")
    assert path.parent == tmp_path and ".." not in path.name


def test_unwritable_cache_still_returns_tables(tmp_path, binary):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cache = UnwindTableCache(blocker / "sub")
    assert cache.get(binary, "f3").row_count == compile_unwind_table(binary).row_count
