"""ProcessTracker against a fake procfs tree: diffs, pid reuse, vanishing processes, bad files, fds."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.bias import load_bias
from fleetprof.process.fileid import file_id_from_build_id, file_id_from_content
from fleetprof.process.files import FileStatus
from fleetprof.process.maps import MapKind
from fleetprof.process.procfs import ProcessGone, ProcFS
from fleetprof.process.tracker import ExecMapping, ProcessTracker

CONTAINER = "3f1a9c0e5b7d24f8a6c1e0b9d8f7a6c5b4e3d2c1f0a9b8c7d6e5f4a3b2c1d0e9"
TEXT = 0x5600_0000_2000  # where the fake processes map the text of their ELF


def _system_elf(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed")
    return os.path.realpath(path)


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeProc:
    """Writes a /proc-like tree: stat, maps, cgroup, exe, map_files, root, task/TID/comm, mem."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(
        self,
        pid: int,
        maps: str = "",
        *,
        comm: str = "fake",
        start_time: int = 1000,
        ppid: int = 1,
        state: str = "S",
        cgroup: str = "0::/\n",
        exe: str = "/usr/bin/fake",
    ) -> Path:
        base = self.root / str(pid)
        (base / "map_files").mkdir(parents=True, exist_ok=True)
        (base / "task" / str(pid)).mkdir(parents=True, exist_ok=True)
        self.set_stat(pid, comm=comm, start_time=start_time, ppid=ppid, state=state)
        (base / "maps").write_text(maps)
        (base / "cgroup").write_text(cgroup)
        (base / "task" / str(pid) / "comm").write_text(comm + "\n")
        if exe:
            os.symlink(exe, base / "exe")
        return base

    def set_stat(self, pid: int, *, comm: str, start_time: int, ppid: int = 1, state: str = "S") -> None:
        fields = " ".join(["0"] * 17)
        (self.root / str(pid) / "stat").write_text(
            f"{pid} ({comm}) {state} {ppid} {fields} {start_time} 0 0\n"
        )

    def map_file(self, pid: int, start: int, end: int, target: str) -> None:
        os.symlink(target, self.root / str(pid) / "map_files" / f"{start:x}-{end:x}")

    def remove(self, pid: int) -> None:
        shutil.rmtree(self.root / str(pid))


def _text_line(start: int, length: int, path: str, offset: int = 0x2000, inode: int = 7) -> str:
    return f"{start:x}-{start + length:x} r-xp {offset:08x} fe:00 {inode} {path}\n"


@dataclass
class Recorder:
    events: list[tuple[str, int, list[ExecMapping]]] = field(default_factory=list)

    def mappings_added(self, pid, mappings):
        self.events.append(("added", pid, list(mappings)))

    def mappings_removed(self, pid, mappings):
        self.events.append(("removed", pid, list(mappings)))

    def process_exited(self, pid):
        self.events.append(("exited", pid, []))


@pytest.fixture
def fake(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    return FakeProc(root)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tracker(fake, tmp_path, clock):
    with ProcessTracker(proc_root=str(fake.root), cache_dir=str(tmp_path / "cache"), clock=clock) as t:
        yield t


@pytest.fixture
def elf(tmp_path):
    path = tmp_path / "true.bin"
    shutil.copyfile(_system_elf("true"), path)
    return str(path)


def test_first_rescan_reports_every_mapping_and_process_metadata(fake, tracker, elf):
    maps = _text_line(TEXT, 0x4000, "/usr/bin/true") + "7f0000000000-7f0000100000 rwxp 00000000 00:00 0 \n"
    fake.add(100, maps, comm="worker", start_time=4242, ppid=7, cgroup=f"0::/docker-{CONTAINER}.scope\n")
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    diff = tracker.rescan(100)
    assert diff is not None and diff.new_process and not diff.removed and diff.changed
    text, jit = diff.added
    info = read_elf_info(elf)
    assert text.status is FileStatus.OK and text.kind is MapKind.FILE
    assert text.file_id == (
        file_id_from_build_id(info.build_id) if info.build_id else file_id_from_content(elf)
    )
    assert text.build_id == info.build_id
    assert text.bias == load_bias(info, TEXT, 0x2000) == TEXT - 0x2000
    assert Path(text.open_path).read_bytes() == Path(elf).read_bytes()
    assert jit.kind is MapKind.ANON and jit.status is FileStatus.NO_FILE and jit.file_id == ""
    proc = tracker.process(100)
    assert (proc.comm, proc.exe, proc.start_time, proc.ppid, proc.container_id) == (
        "worker",
        "/usr/bin/fake",
        4242,
        7,
        CONTAINER,
    )
    assert proc.mappings == (text, jit)
    assert text.to_model().file_id == text.file_id and text.to_model().limit == text.end


def test_lookup_bisects_mapping_bounds(fake, tracker, elf):
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    tracker.rescan(100)
    assert tracker.lookup(100, TEXT).start == TEXT
    assert tracker.lookup(100, TEXT + 0x3FFF).elf_address(TEXT + 0x3FFF) == 0x2000 + 0x3FFF
    assert tracker.lookup(100, TEXT + 0x4000) is None
    assert tracker.lookup(100, TEXT - 1) is None
    assert tracker.lookup(999, TEXT) is None


def test_rescan_diffs_added_and_removed(fake, tracker, elf):
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    first = tracker.rescan(100).added[0]
    lib = 0x7F00_0000_2000
    (fake.root / "100" / "maps").write_text(_text_line(lib, 0x4000, "/usr/lib/libtrue.so", inode=8))
    fake.map_file(100, lib, lib + 0x4000, elf)
    diff = tracker.rescan(100)
    assert not diff.new_process
    assert [m.start for m in diff.added] == [lib] and diff.removed == (first,)
    unchanged = tracker.rescan(100)
    assert not unchanged.changed and unchanged.added == unchanged.removed == ()


def test_pid_reuse_is_detected_by_start_time(fake, tracker, elf):
    recorder = Recorder()
    tracker.add_listener(recorder)
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"), start_time=1000)
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    old = tracker.rescan(100).added[0]
    fake.set_stat(100, comm="other", start_time=2000)
    diff = tracker.rescan(100)
    assert diff.new_process and diff.removed == ()
    assert [m.key for m in diff.added] == [old.key]
    assert [event[0] for event in recorder.events] == ["added", "removed", "exited", "added"]
    assert tracker.process(100).comm == "other" and tracker.process(100).start_time == 2000
    assert tracker.stats()["pid_reuse"] == 1


def test_process_gone_before_stat_or_maps(fake, tracker, monkeypatch):
    assert tracker.rescan(12345) is None
    fake.add(100)
    (fake.root / "100" / "maps").unlink()
    assert tracker.rescan(100) is None
    assert tracker.process(100) is None
    assert tracker.stats()["stat_gone"] == 1 and tracker.stats()["maps_gone"] == 1


def test_process_exiting_between_listing_and_reading(fake, tracker, monkeypatch, elf):
    for pid in (100, 101):
        fake.add(pid, _text_line(TEXT, 0x4000, "/usr/bin/true"))
        fake.map_file(pid, TEXT, TEXT + 0x4000, elf)
    real_read = ProcFS.read_bytes

    def vanish_first(self, pid, *parts):
        if pid == 100 and parts == ("maps",):
            fake.remove(100)
        return real_read(self, pid, *parts)

    monkeypatch.setattr(ProcFS, "read_bytes", vanish_first)
    diffs = tracker.scan_all()
    assert [d.pid for d in diffs] == [101]
    assert tracker.pids() == [101]


def test_process_exiting_while_its_files_are_opened(fake, tracker, monkeypatch, elf):
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    real_map_file = ProcFS.map_file

    def vanish(self, pid, start, end):
        fake.remove(pid)
        return real_map_file(self, pid, start, end)

    monkeypatch.setattr(ProcFS, "map_file", vanish)
    assert tracker.rescan(100) is None
    assert tracker.process(100) is None
    assert tracker.stats()["open_files"] == 0


def test_unreadable_maps_keeps_the_process_without_mappings(fake, tracker, monkeypatch):
    fake.add(100)

    real_read = ProcFS.read_bytes

    def denied(self, pid, *parts):
        if parts == ("maps",):
            raise PermissionError(13, "Permission denied")
        return real_read(self, pid, *parts)

    monkeypatch.setattr(ProcFS, "read_bytes", denied)
    diff = tracker.rescan(100)
    assert diff is not None and diff.added == () and tracker.process(100).mappings == ()
    assert tracker.stats()["maps_permission"] == 1


def test_map_files_missing_falls_back_to_process_root(fake, tracker, elf, tmp_path):
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    shutil.copyfile(elf, rootfs / "usr" / "bin" / "true")
    os.symlink(rootfs, fake.root / "100" / "root")
    mapping = tracker.rescan(100).added[0]
    assert mapping.status is FileStatus.OK
    assert Path(mapping.open_path).read_bytes() == Path(elf).read_bytes()
    assert tracker.stats()["file_open_gone"] == 1


def test_unreadable_and_deleted_files_degrade_without_raising(fake, tracker, tmp_path):
    maps = _text_line(TEXT, 0x4000, "/usr/bin/gone") + _text_line(
        TEXT + 0x10000, 0x4000, "/lib/x.so (deleted)"
    )
    fake.add(100, maps)
    rootfs = tmp_path / "rootfs"
    (rootfs / "lib").mkdir(parents=True)
    (rootfs / "lib" / "x.so").write_bytes(b"a new file replaced the deleted one")
    os.symlink(rootfs, fake.root / "100" / "root")
    gone, deleted = tracker.rescan(100).added
    assert gone.status is FileStatus.UNREADABLE and gone.file_id == "" and gone.bias == TEXT - 0x2000
    assert "gone" in gone.error
    assert deleted.deleted and deleted.status is FileStatus.UNREADABLE  # never the replacement's bytes
    assert tracker.stats()["mapping_unreadable"] == 2


@pytest.mark.parametrize(
    "content",
    [b"#!/bin/sh\necho not an ELF\n", b"\x7fELF\x02\x01\x01" + b"\xff" * 200],
    ids=["not_elf", "corrupt_header"],
)
def test_corrupt_elf_gets_content_hash_id_and_flag(fake, tracker, tmp_path, content):
    bad = tmp_path / "bad.so"
    bad.write_bytes(content)
    fake.add(100, _text_line(TEXT, 0x1000, "/lib/bad.so"))
    fake.map_file(100, TEXT, TEXT + 0x1000, str(bad))
    mapping = tracker.rescan(100).added[0]
    assert mapping.status is FileStatus.BAD_ELF and mapping.error
    assert mapping.file_id == file_id_from_content(str(bad)) and mapping.build_id == ""
    assert mapping.bias == TEXT - 0x2000
    assert tracker.stats()["elf_corrupt"] == 1


def test_elf_facts_parsed_once_and_fds_refcounted(fake, tracker, clock, elf):
    pids = range(100, 400)
    for pid in pids:
        fake.add(pid, _text_line(TEXT, 0x4000, "/usr/bin/true"))
        fake.map_file(pid, TEXT, TEXT + 0x4000, elf)
    diffs = tracker.scan_all()
    assert len(diffs) == 300
    stats = tracker.stats()
    assert stats["elf_parsed"] == 1 and stats["open_files"] == 1 and stats["processes"] == 300
    file_id = diffs[0].added[0].file_id
    assert tracker._files.refs(file_id) == 300
    for pid in pids:
        tracker.on_exit(pid)
    assert tracker.stats()["lingering_files"] == 1
    path = tracker.open_path(file_id)
    assert Path(path).read_bytes() == Path(elf).read_bytes()  # still readable after every exit
    clock.now += 31
    tracker.on_exit(100)  # any mutating call expires lingering fds
    assert tracker.open_path(file_id) == "" and tracker.stats()["open_files"] == 0


def test_pin_keeps_a_file_open_past_exit(fake, tracker, clock, elf):
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    file_id = tracker.rescan(100).added[0].file_id
    assert tracker.pin(file_id)
    tracker.on_exit(100)
    clock.now += 3600
    tracker.sweep()
    tracker.on_exit(100)
    assert tracker.open_path(file_id)
    tracker.unpin(file_id)
    clock.now += 31
    tracker.on_exit(100)
    assert tracker.open_path(file_id) == "" and tracker.pin(file_id) == ""


def test_remap_guess_outside_text_is_rejected(fake, tracker, elf):
    maps = (
        _text_line(TEXT, 0x4000, "/usr/bin/true")
        + f"{TEXT + 0x4000:x}-{TEXT + 0x5000:x} r-xp 00000000 00:00 0 \n"
    )
    fake.add(100, maps)
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    _, anon = tracker.rescan(100).added
    assert anon.kind is MapKind.ANON and not anon.remapped and anon.path == "" and anon.file_id == ""
    assert tracker.stats()["remap_rejected"] == 1 and tracker.stats()["open_files"] == 1
    assert not tracker.rescan(100).changed


def test_exit_notifies_listeners_and_releases(fake, tracker, elf):
    recorder = Recorder()
    tracker.add_listener(recorder)
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    added = tracker.rescan(100).added
    tracker.on_exit(100)
    tracker.on_exit(100)
    assert recorder.events == [
        ("added", 100, list(added)),
        ("removed", 100, list(added)),
        ("exited", 100, []),
    ]
    assert tracker.process(100) is None and tracker.lookup(100, TEXT) is None


def test_listener_errors_are_counted_not_raised(fake, tracker):
    class Broken(Recorder):
        def process_exited(self, pid):
            raise RuntimeError("listener bug")

    tracker.add_listener(Broken())
    fake.add(100)
    tracker.rescan(100)
    tracker.on_exit(100)
    assert tracker.stats()["listener_errors"] == 1


def test_sweep_drops_exited_and_reused(fake, tracker):
    for pid in (100, 101, 102):
        fake.add(pid)
        tracker.rescan(pid)
    fake.remove(100)
    fake.set_stat(101, comm="new", start_time=5)
    assert sorted(tracker.sweep()) == [100, 101]
    assert tracker.pids() == [102]


def test_scan_all_drops_processes_no_longer_listed(fake, tracker):
    fake.add(100)
    fake.add(101)
    tracker.scan_all()
    fake.remove(100)
    tracker.scan_all()
    assert tracker.pids() == [101]


def test_exec_refreshes_names_and_mappings(fake, tracker, elf):
    fake.add(100, comm="sh", exe="/bin/sh")
    tracker.rescan(100)
    base = fake.root / "100"
    os.unlink(base / "exe")
    os.symlink("/usr/bin/true", base / "exe")
    fake.set_stat(100, comm="true", start_time=1000)
    (base / "maps").write_text(_text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    diff = tracker.on_exec(100)
    assert not diff.new_process and [m.path for m in diff.added] == ["/usr/bin/true"]
    assert (tracker.process(100).exe, tracker.process(100).comm) == ("/usr/bin/true", "true")
    os.unlink(base / "exe")  # unreadable later (main thread exited): the last known value stays
    tracker.rescan(100)
    assert tracker.process(100).exe == "/usr/bin/true"
    assert tracker.stats()["execs"] == 1


def test_thread_names_are_cached_and_survive_thread_exit(fake, tracker, clock):
    base = fake.add(100, comm="main")
    (base / "task" / "101").mkdir()
    (base / "task" / "101" / "comm").write_text("worker-1\n")
    assert tracker.thread_name(100, 101) == "worker-1"
    (base / "task" / "101" / "comm").write_text("renamed\n")
    assert tracker.thread_name(100, 101) == "worker-1"
    clock.now += 6
    assert tracker.thread_name(100, 101) == "renamed"
    shutil.rmtree(base / "task" / "101")
    clock.now += 6
    assert tracker.thread_name(100, 101) == "renamed"
    assert tracker.thread_name(100, 999) == ""
    assert tracker.stats()["thread_name_gone"] == 2


def test_descendants_follow_cached_parent_links(fake, tracker):
    fake.add(10, ppid=1)
    fake.add(20, ppid=10)
    fake.add(30, ppid=20)
    fake.add(40, ppid=1)
    assert tracker.is_descendant(30, 10) and tracker.is_descendant(10, 10)
    assert not tracker.is_descendant(40, 10) and not tracker.is_descendant(10, 30)
    fake.remove(20)
    fake.set_stat(30, comm="fake", start_time=1000, ppid=1)  # reparented after its parent exited
    assert tracker.is_descendant(30, 10)  # the link seen before the exit is kept
    tracker.on_fork(30, 50)
    assert tracker.is_descendant(50, 10)
    assert not tracker.is_descendant(12345, 10)


def test_main_thread_exited_reads_maps_and_files_through_another_thread(fake, tracker, elf, tmp_path):
    base = fake.add(100, "", state="Z", exe="")
    (base / "task" / "101").mkdir()
    (base / "task" / "101" / "maps").write_text(_text_line(TEXT, 0x4000, "/usr/bin/true"))
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    shutil.copyfile(elf, rootfs / "usr" / "bin" / "true")
    os.symlink(rootfs, base / "task" / "101" / "root")
    mapping = tracker.rescan(100).added[0]
    assert mapping.status is FileStatus.OK and tracker.process(100).exe == ""
    assert tracker.stats()["maps_via_thread"] == 1


def test_vdso_image_is_read_once_and_cached(fake, tracker, tmp_path):
    vdso = _own_vdso()
    start = 0x10000
    for pid in (100, 101):
        fake.add(pid, f"{start:x}-{start + len(vdso):x} r-xp 00000000 00:00 0 [vdso]\n")
        with open(fake.root / str(pid) / "mem", "wb") as mem:
            mem.seek(start)
            mem.write(vdso)
    fake.add(102, f"{start:x}-{start + len(vdso):x} r-xp 00000000 00:00 0 [vdso]\n")  # no mem: unreadable
    mappings = [tracker.rescan(pid).added[0] for pid in (100, 101, 102)]
    assert len({m.file_id for m in mappings}) == 1
    assert all(m.kind is MapKind.VDSO and m.status is FileStatus.OK for m in mappings)
    assert mappings[0].bias == start and mappings[0].build_id
    cached = list((tmp_path / "cache" / "vdso").iterdir())
    assert len(cached) == 1 and cached[0].read_bytes() == vdso
    assert mappings[0].open_path == str(cached[0]) == tracker.open_path(mappings[0].file_id)
    assert tracker.stats()["vdso_read_gone"] == 1
    tracker.on_exit(100)
    assert tracker.open_path(mappings[0].file_id)


def test_vdso_unreadable_with_no_known_image(fake, tracker):
    fake.add(100, "10000-12000 r-xp 00000000 00:00 0 [vdso]\n")
    mapping = tracker.rescan(100).added[0]
    assert mapping.status is FileStatus.UNREADABLE and mapping.file_id == ""


def test_vdso_kept_in_a_memfd_when_the_cache_is_not_writable(fake, tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    vdso = _own_vdso()
    fake.add(100, f"10000-{0x10000 + len(vdso):x} r-xp 00000000 00:00 0 [vdso]\n")
    with open(fake.root / "100" / "mem", "wb") as mem:
        mem.seek(0x10000)
        mem.write(vdso)
    with ProcessTracker(proc_root=str(fake.root), cache_dir=str(blocker)) as tracker:
        mapping = tracker.rescan(100).added[0]
        assert mapping.status is FileStatus.OK and Path(mapping.open_path).read_bytes() == vdso
        assert tracker.stats()["vdso_cache_unwritable"] == 1


def _own_vdso() -> bytes:
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith("[vdso]"):
            start, end = (int(v, 16) for v in line.split()[0].split("-"))
            with open("/proc/self/mem", "rb") as mem:
                mem.seek(start)
                return mem.read(end - start)
    pytest.skip("no [vdso] in this process")


def test_procfs_stat_parses_awkward_comm(fake):
    fake.add(100, comm="a) (b c")
    st = ProcFS(str(fake.root)).stat(100)
    assert (st.comm, st.ppid, st.start_time) == ("a) (b c", 1, 1000)
    (fake.root / "100" / "stat").write_text("garbage")
    with pytest.raises(ProcessGone):
        ProcFS(str(fake.root)).stat(100)


def test_procfs_descendants_walk_the_tree(fake):
    """A server's workers and their children are found under it; siblings, parents and a process whose stat
    can't be read are not."""
    for pid, ppid in ((10, 1), (11, 10), (12, 10), (13, 11), (20, 1), (21, 20)):
        fake.add(pid, ppid=ppid)
    (fake.root / "14").mkdir()  # gone between listing and reading
    procfs = ProcFS(str(fake.root))
    assert procfs.descendants([10]) == {11, 12, 13}
    assert procfs.descendants([11, 20]) == {13, 21}
    assert procfs.descendants([13]) == set()


def test_unreadable_mapping_is_retried_on_rescan(fake, tracker, elf):
    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    first = tracker.rescan(100).added[0]
    assert first.status is FileStatus.UNREADABLE
    assert not tracker.rescan(100).changed  # still unreadable: no churn for listeners
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    diff = tracker.rescan(100)
    assert diff.removed == (first,) and diff.added[0].status is FileStatus.OK
    assert tracker.lookup(100, TEXT).status is FileStatus.OK
    assert tracker.stats()["unreadable_recovered"] == 1


def test_lookups_while_another_thread_rescans(fake, tracker, elf):
    import threading

    fake.add(100, _text_line(TEXT, 0x4000, "/usr/bin/true"))
    fake.map_file(100, TEXT, TEXT + 0x4000, elf)
    lib = 0x7F00_0000_2000
    fake.map_file(100, lib, lib + 0x4000, elf)
    tracker.rescan(100)
    errors: list[BaseException] = []
    stop = threading.Event()

    def poll():
        try:
            while not stop.is_set():
                found = tracker.lookup(100, TEXT + 0x10)
                assert found is None or found.contains(TEXT + 0x10)
                tracker.process(100)
                tracker.thread_name(100, 100)
        except BaseException as exc:
            errors.append(exc)

    poller = threading.Thread(target=poll)
    poller.start()
    maps = fake.root / "100" / "maps"
    for round_ in range(50):
        text = _text_line(TEXT, 0x4000, "/usr/bin/true")
        maps.write_text(text + _text_line(lib, 0x4000, "/usr/lib/x.so", inode=8) if round_ % 2 else text)
        tracker.rescan(100)
    stop.set()
    poller.join()
    assert errors == []
    assert tracker.stats()["open_files"] == 1
