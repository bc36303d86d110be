"""ProcessTracker on real processes: small C programs report the dynamic linker's view of themselves.

`dl_iterate_phdr` gives each object's load bias (`dlpi_addr`) and `nm` the ELF address of a function,
so every bias and `elf_address` the tracker computes is checked against the loader and the symbol table.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.files import FileStatus
from fleetprof.process.maps import MapKind
from fleetprof.process.tracker import ProcessTracker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "process"
GCC = shutil.which("gcc")
NM = shutil.which("nm")
pytestmark = pytest.mark.skipif(GCC is None or NM is None, reason="needs gcc and nm")


def _map_files_readable() -> bool:
    """/proc/PID/map_files needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE); deleted files need it."""
    try:
        os.stat(os.path.join("/proc/self/map_files", os.listdir("/proc/self/map_files")[0]))
    except (OSError, IndexError):
        return False
    return True


needs_map_files = pytest.mark.skipif(not _map_files_readable(), reason="needs map_files access (root)")


def _gcc(*args: str) -> None:
    subprocess.run([GCC, *args], check=True, capture_output=True)


def _lld_like_script(directory: Path) -> Path | None:
    """GNU ld's default shared-library script, changed to place text like lld (p_offset != p_vaddr)."""
    verbose = subprocess.run(
        [GCC, "-shared", "-Wl,--verbose", "-o", str(directory / "probe.so"), str(FIXTURES / "fleetlib.c")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script = verbose.split("=" * 50)[1] if verbose.count("=" * 50) >= 2 else ""
    script = script[script.index("\n") + 1 :] if "\n" in script else ""
    aligned = re.search(r"\n\s*\. = ALIGN\(CONSTANT \(MAXPAGESIZE\)\);\n\s*\.init\s", script)
    if aligned is None:
        return None
    lld = "\n  . = ALIGN(CONSTANT (MAXPAGESIZE)) + (. & (CONSTANT (MAXPAGESIZE) - 1));\n  .init "
    path = directory / "lld_like.ld"
    path.write_text(script[: aligned.start()] + lld + script[aligned.end() :])
    return path


@dataclass(frozen=True)
class Built:
    pie: str
    no_pie: str
    lib: str
    odd_lib: str | None


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    out = tmp_path_factory.mktemp("process_live")
    source, lib_source = str(FIXTURES / "target.c"), str(FIXTURES / "fleetlib.c")
    _gcc("-O1", "-fPIE", "-pie", "-o", str(out / "target_pie"), source, "-ldl", "-lpthread")
    _gcc("-O1", "-fno-pie", "-no-pie", "-o", str(out / "target_nopie"), source, "-ldl", "-lpthread")
    _gcc("-O1", "-shared", "-fPIC", "-o", str(out / "libfleet.so"), lib_source)
    script = _lld_like_script(out)
    odd = None
    if script is not None:
        _gcc("-O1", "-shared", "-fPIC", f"-Wl,-T,{script}", "-o", str(out / "libodd.so"), lib_source)
        odd = str(out / "libodd.so")
    return Built(str(out / "target_pie"), str(out / "target_nopie"), str(out / "libfleet.so"), odd)


def _symbol(path: str, name: str) -> int:
    for line in subprocess.run([NM, path], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] == name:
            return int(parts[0], 16)
    raise AssertionError(f"{name} not in {path}")


@dataclass
class Target:
    proc: subprocess.Popen[str]
    values: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)  # realpath (or "-" for the main program) -> bias

    @property
    def pid(self) -> int:
        return self.values["pid"]

    def read_report(self) -> None:
        """Read "key value" lines up to the next "end" (the dynamic linker's object list)."""
        while line := self.proc.stdout.readline():
            word, _, rest = line.strip().partition(" ")
            if word == "end":
                return
            if word == "error":
                raise AssertionError(rest)
            if word == "obj":
                name, _, bias = rest.rpartition(" ")
                literal = name in ("-", "linux-vdso.so.1") or name.startswith("/proc/self/")
                key = name if literal else os.path.realpath(name)
                self.objects[key] = int(bias, 16)
            else:
                self.values[word] = int(rest, 16 if word in ("hot", "lib") else 10)
        raise AssertionError(f"target exited early ({self.proc.wait()})")

    def read_value(self, key: str) -> int:
        line = self.proc.stdout.readline().split()
        assert line and line[0] == key, line
        self.values[key] = int(line[1], 16 if key in ("hot", "lib") else 10)
        return self.values[key]

    def send(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()


@contextmanager
def target(*argv: str) -> Iterator[Target]:
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        running = Target(proc)
        running.read_report()
        yield running
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def tracker(tmp_path):
    with ProcessTracker(cache_dir=str(tmp_path / "cache")) as t:
        yield t


def _check_biases(tracker: ProcessTracker, t: Target) -> None:
    """Every file mapping's bias equals the dynamic linker's for that object."""
    info = tracker.process(t.pid)
    checked = set()
    for mapping in info.mappings:
        if mapping.kind is MapKind.VDSO:
            assert mapping.bias == t.objects["linux-vdso.so.1"]
            checked.add("vdso")
        elif mapping.kind is MapKind.FILE and os.path.realpath(mapping.path) in t.objects:
            assert mapping.status is FileStatus.OK
            assert mapping.bias == t.objects[os.path.realpath(mapping.path)], mapping.path
            checked.add(os.path.realpath(mapping.path))
    assert "vdso" in checked and len(checked) >= 3


def test_pie_bias_and_dlopen_after_start(tracker, built):
    with target(built.pie, "dlopen", built.lib) as t:
        first = tracker.rescan(t.pid)
        assert first.new_process and first.added
        main = tracker.lookup(t.pid, t.values["hot"])
        assert main.path == built.pie and main.bias == t.objects["-"] != 0
        assert main.elf_address(t.values["hot"]) == _symbol(built.pie, "fleet_hot")
        _check_biases(tracker, t)
        assert tracker.lookup(t.pid, 0x10) is None

        t.send()
        lib_address = t.read_value("lib")
        t.read_report()
        assert tracker.lookup(t.pid, lib_address) is None
        diff = tracker.rescan(t.pid)
        assert not diff.new_process and not diff.removed
        assert [m.path for m in diff.added] == [built.lib]
        lib = tracker.lookup(t.pid, lib_address)
        assert lib.bias == t.objects[built.lib]
        assert lib.elf_address(lib_address) == _symbol(built.lib, "fleet_lib_func")
        assert lib.build_id == read_elf_info(built.lib).build_id
        _check_biases(tracker, t)


def test_non_pie_bias_is_zero(tracker, built):
    with target(built.no_pie, "none") as t:
        tracker.rescan(t.pid)
        main = tracker.lookup(t.pid, t.values["hot"])
        assert t.objects["-"] == 0 and main.bias == 0
        assert main.elf_address(t.values["hot"]) == _symbol(built.no_pie, "fleet_hot") == t.values["hot"]
        _check_biases(tracker, t)


def test_lld_like_layout_bias(tracker, built):
    if built.odd_lib is None:
        pytest.skip("the default GNU ld script has an unexpected shape")
    text = next(seg for seg in read_elf_info(built.odd_lib).loads if seg.executable)
    assert text.offset % 4096 != 0 and text.vaddr != text.offset
    with target(built.pie, "dlopen", built.odd_lib) as t:
        t.send()
        address = t.read_value("lib")
        t.read_report()
        tracker.rescan(t.pid)
        lib = tracker.lookup(t.pid, address)
        assert lib.bias == t.objects[built.odd_lib] != lib.start - lib.offset
        assert lib.elf_address(address) == _symbol(built.odd_lib, "fleet_lib_func")


@needs_map_files
def test_library_loaded_from_memfd(tracker, built):
    with target(built.pie, "memfd", built.lib) as t:
        tracker.rescan(t.pid)
        t.send()
        address = t.read_value("lib")
        t.read_report()
        diff = tracker.rescan(t.pid)
        (lib,) = diff.added
        assert lib.kind is MapKind.MEMFD and lib.deleted and lib.path == "/memfd:fleetlib"
        assert lib.status is FileStatus.OK and lib.build_id == read_elf_info(built.lib).build_id
        memfd_name = next(name for name in t.objects if name.startswith("/proc/self/fd/"))
        assert lib.bias == t.objects[memfd_name]
        assert lib.elf_address(address) == _symbol(built.lib, "fleet_lib_func")


def test_remapped_text_is_attributed_to_the_executable(tracker, built):
    with target(built.pie, "remap") as t:
        assert t.read_value("remapped") == 7
        tracker.rescan(t.pid)
        hot = tracker.lookup(t.pid, t.values["hot"])
        assert hot.remapped and hot.kind is MapKind.FILE and hot.status is FileStatus.OK
        assert hot.path == built.pie and hot.bias == t.objects["-"]
        assert hot.elf_address(t.values["hot"]) == _symbol(built.pie, "fleet_hot")
        assert not tracker.rescan(t.pid).changed


def test_main_thread_exited(tracker, built):
    with target(built.pie, "zombie") as t:
        tid = t.read_value("tid")
        deadline = time.monotonic() + 10
        while Path(f"/proc/{t.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the main thread did not exit"
            time.sleep(0.005)
        diff = tracker.rescan(t.pid)
        main = tracker.lookup(t.pid, t.values["hot"])
        assert diff.added and main is not None and main.status is FileStatus.OK
        assert main.bias == t.objects["-"]
        assert tracker.thread_name(t.pid, tid) == "fleetworker"
        assert tracker.stats()["maps_via_thread"] == 1


@needs_map_files
def test_deleted_executable_stays_readable_after_exit(tracker, built, tmp_path):
    copy = tmp_path / "doomed"
    shutil.copyfile(built.pie, copy)
    copy.chmod(0o755)
    original = copy.read_bytes()
    with target(str(copy), "none") as t:
        copy.unlink()
        tracker.rescan(t.pid)
        main = tracker.lookup(t.pid, t.values["hot"])
        assert main.deleted and main.status is FileStatus.OK and main.path == str(copy)
        assert main.bias == t.objects["-"]
        t.proc.send_signal(signal.SIGKILL)
        t.proc.wait()
        assert tracker.rescan(t.pid) is None and tracker.process(t.pid) is None
        assert Path(tracker.open_path(main.file_id)).read_bytes() == original


def test_exec_replaces_the_mappings(tracker, built):
    shell = subprocess.Popen(
        ["/bin/sh", "-c", f"echo ready; read line; exec {built.pie} none"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert shell.stdout.readline() == "ready\n"  # the shell is loaded, not mid-exec
        before = tracker.rescan(shell.pid)
        assert before is not None and tracker.process(shell.pid).exe != built.pie
        shell.stdin.write("go\n")
        shell.stdin.flush()
        running = Target(shell)
        running.read_report()
        diff = tracker.on_exec(shell.pid)
        assert diff.removed and any(m.path == built.pie for m in diff.added)
        assert tracker.process(shell.pid).exe == built.pie
        assert tracker.lookup(shell.pid, running.values["hot"]).bias == running.objects["-"]
    finally:
        shell.kill()
        shell.wait()
