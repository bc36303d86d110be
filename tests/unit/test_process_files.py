"""FileTable: facts cache, fd reference counts, stable paths across replacement, fd exhaustion."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from fleetprof.process.counters import Counters
from fleetprof.process.files import FileStatus, FileTable, FileUnavailable


@pytest.fixture
def table():
    files = FileTable(Counters(), linger_s=0.0)
    yield files
    files.close()


@pytest.fixture
def elf(tmp_path):
    source = shutil.which("true")
    if source is None:
        pytest.skip("true not installed")
    path = tmp_path / "lib.so"
    shutil.copyfile(os.path.realpath(source), path)
    return path


def test_open_path_keeps_reading_the_file_after_it_is_replaced(table, elf, tmp_path):
    original = elf.read_bytes()
    facts, path = table.acquire([str(elf)])
    assert facts.status is FileStatus.OK and facts.elf is not None
    replacement = tmp_path / "new.so"
    replacement.write_bytes(b"an upgrade replaced the library")
    os.replace(replacement, elf)
    assert Path(path).read_bytes() == original
    assert table.open_path(facts.file_id) == path


def test_refcounts_close_at_zero_without_linger(table, elf):
    facts, _ = table.acquire([str(elf)])
    table.acquire([str(elf)])
    assert table.refs(facts.file_id) == 2 and table.open_files == 1
    table.release(facts.file_id)
    assert table.open_files == 1
    table.release(facts.file_id)
    assert table.open_files == 0 and table.open_path(facts.file_id) == ""
    table.release(facts.file_id)  # extra releases are harmless


def test_candidates_are_tried_in_order(table, elf, tmp_path):
    facts, _ = table.acquire([str(tmp_path / "missing"), "/dev/null", str(elf)])
    assert facts.status is FileStatus.OK
    with pytest.raises(FileUnavailable) as gone:
        table.acquire([str(tmp_path / "missing")])
    assert gone.value.reason == "gone"
    with pytest.raises(FileUnavailable) as nothing:
        table.acquire([])
    assert nothing.value.reason == "no_path"


def test_fd_exhaustion_degrades_to_an_unstable_path(table, elf, monkeypatch):
    facts, _ = table.acquire([str(elf)])
    table.release(facts.file_id)
    real_open = os.open

    def exhausted(path, flags, *args):
        if str(path) == str(elf):
            raise OSError(errno.EMFILE, "Too many open files")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", exhausted)
    again, path = table.acquire([str(elf)])  # facts are cached: still usable, through the plain path
    assert again == facts and path == str(elf)
    other = elf.with_name("other.so")
    shutil.copyfile(elf, other)

    def always_exhausted(*args):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(os, "open", always_exhausted)
    with pytest.raises(FileUnavailable) as unavailable:
        table.acquire([str(other)])
    assert unavailable.value.reason == "fd_limit"


def test_permanent_files_ignore_refcounts(table, tmp_path):
    image = tmp_path / "vdso.so"
    image.write_bytes(b"x")
    table.add_permanent("ab" * 16, str(image))
    table.release("ab" * 16)
    assert table.open_path("ab" * 16) == str(image) and table.open_files == 0
    assert table.pin("ab" * 16) == str(image)
