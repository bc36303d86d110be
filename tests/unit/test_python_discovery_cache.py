"""CPython discovery's one cache: per file id in memory, on disk under a caller's directory (negative
results too), one inspection when several threads ask for the same file, untrusted files ignored."""

from __future__ import annotations

import os
import pickle
import sys
import threading
import time
from pathlib import Path

import pytest

from fleetprof.interpreters.python import discovery
from fleetprof.interpreters.python.discovery import (
    CACHE_FORMAT,
    PythonBinary,
    UnsupportedPython,
    inspect_python_binary,
)

FILE_ID = "ab" * 16


def _this_cpython() -> str:
    """The ELF file with this interpreter's eval loop: its libpython when mapped, else the executable."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if os.path.basename(path).startswith("libpython3"):
                return path
    return os.path.realpath(sys.executable)


@pytest.fixture(autouse=True)
def fresh_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: nothing in memory."""
    monkeypatch.setattr(discovery, "_cache", {})
    monkeypatch.setattr(discovery, "_inspecting", {})


def _forbid_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: str, file_id: str) -> None:
        raise AssertionError(f"{path} inspected again")

    monkeypatch.setattr(discovery, "_inspect", fail)


def test_a_found_cpython_is_kept_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = inspect_python_binary(_this_cpython(), FILE_ID, cache_dir=tmp_path)
    assert isinstance(found, PythonBinary)
    assert found.version[:2] == sys.version_info[:2]
    assert pickle.loads((tmp_path / f"{FILE_ID}.pickle").read_bytes()) == (CACHE_FORMAT, found)
    monkeypatch.setattr(discovery, "_cache", {})
    _forbid_inspection(monkeypatch)
    assert inspect_python_binary("/nonexistent", FILE_ID, cache_dir=tmp_path) == found


def test_not_cpython_is_kept_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert inspect_python_binary("/bin/ls", FILE_ID, cache_dir=tmp_path) is None
    assert pickle.loads((tmp_path / f"{FILE_ID}.pickle").read_bytes()) == (CACHE_FORMAT, None)
    monkeypatch.setattr(discovery, "_cache", {})
    _forbid_inspection(monkeypatch)
    assert inspect_python_binary("/bin/ls", FILE_ID, cache_dir=tmp_path) is None


def test_unsupported_is_kept_on_disk_with_its_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported(path: str, file_id: str) -> None:
        raise UnsupportedPython(f"{path}: no layout for CPython 3.99")

    monkeypatch.setattr(discovery, "_inspect", unsupported)
    with pytest.raises(UnsupportedPython, match=r"^/x/libpython3\.99\.so: no layout for CPython 3\.99$"):
        inspect_python_binary("/x/libpython3.99.so", FILE_ID, cache_dir=tmp_path)
    monkeypatch.setattr(discovery, "_cache", {})
    _forbid_inspection(monkeypatch)
    with pytest.raises(UnsupportedPython, match=r"^/x/libpython3\.99\.so: no layout for CPython 3\.99$"):
        inspect_python_binary("/elsewhere", FILE_ID, cache_dir=tmp_path)


def test_memory_serves_callers_without_a_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = inspect_python_binary(_this_cpython(), FILE_ID, cache_dir=tmp_path)
    _forbid_inspection(monkeypatch)
    assert inspect_python_binary("/nonexistent", FILE_ID) is first


def test_concurrent_callers_share_one_inspection(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def slow(path: str, file_id: str) -> None:
        calls.append(path)
        time.sleep(0.2)  # long enough for every thread to be waiting on the same file id

    monkeypatch.setattr(discovery, "_inspect", slow)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(inspect_python_binary("/f", FILE_ID)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == ["/f"]
    assert results == [None] * 4


@pytest.mark.parametrize(
    ("content", "mode"),
    [
        (pickle.dumps((CACHE_FORMAT, None)), 0o666),  # others may write it: never unpickled
        (pickle.dumps((CACHE_FORMAT + 1, None)), 0o644),  # another format
        (pickle.dumps((CACHE_FORMAT, "x", "y")), 0o644),  # not a pair
        (pickle.dumps((CACHE_FORMAT, 42)), 0o644),  # not a result
        (b"\x80\x05garbage", 0o644),
    ],
    ids=["world-writable", "other-format", "not-a-pair", "not-a-result", "garbage"],
)
def test_untrusted_or_foreign_files_are_inspected_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, mode: int
) -> None:
    path = tmp_path / f"{FILE_ID}.pickle"
    path.write_bytes(content)
    path.chmod(mode)
    calls: list[str] = []

    def unsupported(path: str, file_id: str) -> None:
        calls.append(path)
        raise UnsupportedPython("inspected")

    monkeypatch.setattr(discovery, "_inspect", unsupported)
    with pytest.raises(UnsupportedPython, match=r"^inspected$"):
        inspect_python_binary("/f", FILE_ID, cache_dir=tmp_path)
    assert calls == ["/f"]
    assert pickle.loads(path.read_bytes()) == (CACHE_FORMAT, "inspected")
