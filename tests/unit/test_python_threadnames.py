"""Python thread names read from live child interpreters of every version on the machine, the layout table
checked against their DWARF, the naming rule, caching and refresh, and hostile memory."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetprof.interpreters.python.process import PythonProcess, find_python
from fleetprof.interpreters.python.threadnames import (
    LAYOUTS,
    NameReader,
    ThreadNames,
    choose_thread_name,
    layout_for,
    namespace_tid,
)
from fleetprof.process.memory import MemoryReader, ProcessMemory

PYENV_ROOT = Path("/root/.pyenv/versions")
PYENV = ("3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0")
DEBIAN_PYTHON = Path("/usr/bin/python3.11")


def _interpreters() -> list:
    """Every pyenv interpreter of the matrix and Debian's python3.11; a missing one skips, saying which."""
    params = [pytest.param(PYENV_ROOT / v / "bin" / f"python3.{v.split('.')[1]}", id=v) for v in PYENV]
    skip = pytest.mark.skipif(not DEBIAN_PYTHON.exists(), reason=f"{DEBIAN_PYTHON} is not installed")
    return [*params, pytest.param(DEBIAN_PYTHON, id="debian-3.11", marks=skip)]


# Starts threads whose Thread objects keep their attributes every way CPython can: plain, a subclass, a
# materialized __dict__, more attributes than the shared keys hold, renamed after start, a thread started
# by C code (_DummyThread). Prints {native id: name}, then renames the "worker" thread per stdin line.
CHILD = r"""
import _thread, json, sys, threading

stop = threading.Event()


class Sub(threading.Thread):
    def __init__(self):
        super().__init__(name="subclassed")
        self.extra = 1

    def run(self):
        stop.wait()


threads = [
    threading.Thread(target=stop.wait, name="worker"),
    threading.Thread(target=stop.wait, name="w\u00f6rker-\u00fc"),
    threading.Thread(target=stop.wait),
    Sub(),
    threading.Thread(target=stop.wait, name="many-" + "x" * 100),
    threading.Thread(target=stop.wait, name="materialized"),
    threading.Thread(target=stop.wait, name="before-rename"),
]
threads[5].__dict__
for i in range(40):
    setattr(threads[4], "attr%d" % i, i)
for t in threads:
    t.start()
threads[6].name = "renamed"
dummy = {}
ready = threading.Event()


def foreign():
    dummy[threading.get_native_id()] = threading.current_thread().name
    ready.set()
    stop.wait()


_thread.start_new_thread(foreign, ())
ready.wait()
names = {t.native_id: t.name for t in threads}
names[threading.get_native_id()] = threading.current_thread().name
names.update(dummy)
print(json.dumps(names), flush=True)
for line in sys.stdin:
    threads[0].name = line.strip()
    print("ok", flush=True)
"""


@dataclass
class Child:
    """A running CHILD: its process, and the names it reported by native thread id."""

    proc: subprocess.Popen[str]
    names: dict[int, str]

    @property
    def process(self) -> PythonProcess:
        """The child as fleetprof's discovery sees it."""
        found = find_python(self.proc.pid)
        assert found is not None, "discovery finds the child's CPython"
        return found

    def rename_worker(self, name: str) -> None:
        """Rename the "worker" thread and wait until done."""
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "ok"


@contextmanager
def child(executable: Path, source: str = CHILD, *flags: str) -> Iterator[Child]:
    """Run `source` under `executable` (with interpreter `flags`) until the with block ends."""
    if not os.path.exists(executable):  # Path.exists raises when pyenv's tree is another user's
        pytest.skip(f"{executable} is missing or unreadable here (a pyenv build: pyenv install VERSION)")
    proc = subprocess.Popen(
        [str(executable), *flags, "-c", source],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"{executable}: the child exited with {proc.wait(timeout=10)}")
        yield Child(proc, {int(k): v for k, v in json.loads(line).items()})
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdin, proc.stdout):
            if stream:
                stream.close()


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# ---- live interpreters ----------------------------------------------------------------------------------


@pytest.mark.parametrize("executable", _interpreters())
def test_reader_names_every_thread(executable: Path) -> None:
    """One read returns {native id: name} of every thread `threading` knows, exactly as the child has them."""
    with child(executable) as kid:
        process = kid.process
        with ProcessMemory(kid.proc.pid) as mem:
            layout = layout_for(process, mem)
            assert layout is not None
            assert NameReader(process, mem, layout).read() == kid.names
        assert "MainThread" in kid.names.values()
        assert any(name.startswith("Dummy-") for name in kid.names.values())


@pytest.mark.parametrize("executable", _interpreters())
def test_thread_names_follow_renames_after_the_refresh(executable: Path) -> None:
    """ThreadNames names each (pid, tid) with one read, serves later asks from its cache, and sees a
    rename once the refresh interval has passed."""
    clock = Clock()
    names = ThreadNames(refresh_seconds=2.0, retry_seconds=0.02, clock=clock)
    with child(executable) as kid:
        pid = kid.proc.pid
        names.register(kid.process)
        for tid in kid.names:
            names.observe(pid, tid)
        assert {tid: names.python_name(pid, tid) for tid in kid.names} == kid.names
        assert names.reads == 1
        worker = next(tid for tid, name in kid.names.items() if name == "worker")
        kid.rename_worker("worker-2")
        clock.now += 1.0
        names.observe(pid, worker)
        assert names.python_name(pid, worker) == "worker", "fresh enough: no read"
        assert names.reads == 1
        clock.now += 1.5
        names.observe(pid, worker)
        assert names.python_name(pid, worker) == "worker-2"
        assert names.reads == 2
        names.forget(pid)
    assert names.python_name(pid, worker) == "worker-2", "names outlive the process for later profiles"


def test_one_read_refreshes_every_thread_it_names() -> None:
    """Threads sampled at different moments share the process's reads: a thread first seen after a read
    that named it costs no read, and one read at the refresh renews them all (not one read per thread)."""
    clock = Clock()
    names = ThreadNames(refresh_seconds=2.0, retry_seconds=0.02, clock=clock)
    with child(PYENV_ROOT / "3.12.1" / "bin" / "python3.12") as kid:
        pid = kid.proc.pid
        names.register(kid.process)
        tids = sorted(kid.names)
        names.observe(pid, tids[0])
        clock.now += 1.0
        for tid in tids[1:]:
            names.observe(pid, tid)
        assert names.reads == 1
        assert {tid: names.python_name(pid, tid) for tid in tids} == kid.names
        for i in range(45):  # 4.5 s of samples, on each thread in turn
            clock.now += 0.1
            names.observe(pid, tids[i % len(tids)])
        assert names.reads == 3, "one read per refresh interval, whichever thread comes due first"


@pytest.mark.parametrize("executable", _interpreters())
def test_thread_name_prefers_a_name_the_application_set(executable: Path) -> None:
    """thread_name: the OS name when it differs from the process name, else the Python name."""
    names = ThreadNames()
    with child(executable) as kid:
        pid = kid.proc.pid
        names.register(kid.process)
        worker = next(tid for tid, name in kid.names.items() if name == "worker")
        assert names.thread_name(pid, worker, "python3", "python3") == "worker"
        assert names.thread_name(pid, worker, "io-loop", "python3") == "io-loop"
        assert names.thread_name(pid, pid, "python3", "python3") == "MainThread"


def test_a_tid_threading_does_not_know_backs_off() -> None:
    """A tid missing from `_active` (a C thread, or one not started yet) is re-checked after
    `retry_seconds`, then twice, four times... as long, up to the refresh interval, not on every sample."""
    clock = Clock()
    step = 2.0**-7  # exact in binary floating point
    names = ThreadNames(refresh_seconds=2.0, retry_seconds=2 * step, clock=clock)
    with child(PYENV_ROOT / "3.12.1" / "bin" / "python3.12") as kid:
        pid = kid.proc.pid
        names.register(kid.process)
        stranger = max(kid.names) + 10_000
        reads = []
        for _ in range(1200):
            names.observe(pid, stranger)
            reads.append(names.reads)
            clock.now += step
        assert names.python_name(pid, stranger) is None
    steps_at_read = [i for i in range(1, len(reads)) if reads[i] > reads[i - 1]]
    gaps = [b - a for a, b in itertools.pairwise([0, *steps_at_read])]
    assert reads[0] == 1
    assert gaps == [2, 4, 8, 16, 32, 64, 128, 256, 256, 256], "doubling up to the refresh interval"


@pytest.mark.parametrize("executable", _interpreters())
def test_no_threading_module_means_no_name(executable: Path) -> None:
    """A process that never imported `threading` has no Python thread names: no name, no error."""
    source = (
        "import sys; assert 'threading' not in sys.modules; print('{}', flush=True); sys.stdin.readline()"
    )
    with child(executable, source, "-S") as kid:  # no site: pyenv's 3.11 site imports threading
        process = kid.process
        with ProcessMemory(kid.proc.pid) as mem:
            layout = layout_for(process, mem)
            assert layout is not None
            assert NameReader(process, mem, layout).read() is None
        names = ThreadNames()
        names.register(process)
        assert names.thread_name(kid.proc.pid, kid.proc.pid, "python3", "python3") == "python3"


def test_a_process_that_is_gone_gives_no_name() -> None:
    """Reading an exited process fails quietly."""
    with child(PYENV_ROOT / "3.10.13" / "bin" / "python3.10") as kid:
        process = kid.process
    names = ThreadNames()
    names.register(process)
    names.observe(process.pid, process.pid)
    assert names.python_name(process.pid, process.pid) is None


def test_a_new_process_on_a_reused_pid_drops_the_old_names() -> None:
    """register() of another process (another start time) with the same pid forgets the old names."""
    with child(PYENV_ROOT / "3.11.7" / "bin" / "python3.11") as kid:
        process = kid.process
        names = ThreadNames()
        names.register(process)
        names.observe(process.pid, process.pid)
        assert names.python_name(process.pid, process.pid) == "MainThread"
        names.register(process)
        assert names.python_name(process.pid, process.pid) == "MainThread", "same process: kept"
    reused = PythonProcess(process.pid, process.binary, process.bias, process.start_time + 1)
    names.register(reused)
    assert names.python_name(process.pid, process.pid) is None


# ---- the table against the interpreters' DWARF and _Py_DebugOffsets -------------------------------------

_DWARF = {
    "interp_modules": (
        (8, 11, "OFF(PyInterpreterState, modules)"),
        (12, 13, "OFF(PyInterpreterState, imports.modules)"),
    ),
    "keys_nentries": ((8, 13, "OFF(PyDictKeysObject, dk_nentries)"),),
    "keys_indices": ((8, 13, "OFF(PyDictKeysObject, dk_indices)"),),
    "keys_size": ((8, 10, "OFF(PyDictKeysObject, dk_size)"), (11, 13, "OFF(PyDictKeysObject, dk_log2_size)")),
    "keys_index_bytes": ((11, 13, "OFF(PyDictKeysObject, dk_log2_index_bytes)"),),
    "keys_kind": ((11, 13, "OFF(PyDictKeysObject, dk_kind)"),),
    "ht_cached_keys": ((11, 13, "OFF(PyHeapTypeObject, ht_cached_keys)"),),
    "values_array": ((11, 13, "OFF(struct _dictvalues, values)"),),
    "values_valid": ((13, 13, "OFF(struct _dictvalues, valid)"),),
    "dict_keys": ((8, 13, "OFF(PyDictObject, ma_keys)"),),
    "dict_values": ((8, 13, "OFF(PyDictObject, ma_values)"),),
    "module_dict": ((8, 13, "OFF(PyModuleObject, md_dict)"),),
    "tp_basicsize": ((8, 13, "OFF(PyTypeObject, tp_basicsize)"),),
    "tp_flags": ((8, 13, "OFF(PyTypeObject, tp_flags)"),),
    "tp_dictoffset": ((8, 13, "OFF(PyTypeObject, tp_dictoffset)"),),
    "long_size": ((8, 11, "OFF(PyVarObject, ob_size)"), (12, 13, "OFF(PyLongObject, long_value.lv_tag)")),
    "long_digits": (
        (8, 11, "OFF(PyLongObject, ob_digit)"),
        (12, 13, "OFF(PyLongObject, long_value.ob_digit)"),
    ),
    "py_entry_size": ((8, 13, "sizeof(PyDictKeyEntry)"),),
    "unicode_entry_size": ((11, 13, "sizeof(PyDictUnicodeEntry)"),),
}


def _dwarf(library: Path, minor: int) -> dict[str, int]:
    names, args = [], ["gdb", "-batch", "-nx"]
    for name, ranges in _DWARF.items():
        for first, last, expr in ranges:
            if first <= minor <= last:
                names.append(name)
                expr = re.sub(r"OFF\(([^,]+), ([^)]+)\)", r"(long)&((\1 *)0)->\2", expr)
                args += ["-ex", f"print {expr}"]
    out = subprocess.run([*args, str(library)], capture_output=True, text=True, timeout=120).stdout
    values = [int(v) for v in re.findall(r"^\$\d+ = (-?\d+)$", out, re.MULTILINE)]
    assert len(values) == len(names), f"gdb answered {len(values)} of {len(names)} for {library}:\n{out}"
    return dict(zip(names, values, strict=True))


@pytest.mark.parametrize("version", PYENV)
def test_layout_table_matches_dwarf(version: str) -> None:
    """Every offset of the minor's row (and the entry sizes and flags the reader hard-codes) is what the
    pyenv build's DWARF says."""
    minor = int(version.split(".")[1])
    library = PYENV_ROOT / version / "lib" / f"libpython3.{minor}.so.1.0"
    if not os.path.exists(library):
        pytest.skip(f"{library} is missing or unreadable here (pyenv install {version})")
    dwarf = _dwarf(library, minor)
    row = LAYOUTS[minor]
    for name in dwarf.keys() & set(row.__slots__):
        assert getattr(row, name) == dwarf[name], name
    assert dwarf["py_entry_size"] == 24
    assert dwarf.get("unicode_entry_size", 16) == 16


def test_313_takes_the_modules_offset_from_debug_offsets() -> None:
    """On 3.13 the modules dict offset comes from the target's _Py_DebugOffsets and agrees with the table."""
    with child(PYENV_ROOT / "3.13.0" / "bin" / "python3.13") as kid:
        process = kid.process
        with ProcessMemory(kid.proc.pid) as mem:
            layout = layout_for(process, mem)
    assert layout is not None
    assert layout.interp_modules == LAYOUTS[13].interp_modules


# ---- rules and hostile input ----------------------------------------------------------------------------


def test_choose_thread_name() -> None:
    """The OS name wins when it differs from the process name; else the Python name when known."""
    assert choose_thread_name("python3", "python3", "worker") == "worker"
    assert choose_thread_name("io-loop", "python3", "worker") == "io-loop"
    assert choose_thread_name("python3", "python3", None) == "python3"
    assert choose_thread_name("python3", "python3", "") == "python3"


def test_namespace_tid_of_a_host_thread_is_itself() -> None:
    """Outside containers a thread's tid is the same in its namespace; a gone tid maps to itself."""
    assert namespace_tid(os.getpid(), threading.get_native_id()) == threading.get_native_id()
    assert namespace_tid(os.getpid(), 1 << 30) == 1 << 30


class RandomMemory(MemoryReader):
    """Every read succeeds with bytes from a seeded stream: pointers, counts and strings are garbage."""

    def __init__(self, data: bytes) -> None:
        self.data = data or b"\0"
        self.reads = 0
        self.last_error = ""

    def read(self, addr: int, size: int) -> bytes | None:
        self.reads += 1
        if size > 1 << 20:
            return None
        start = addr % len(self.data)
        return ((self.data[start:] + self.data) * (size // len(self.data) + 2))[:size]


@pytest.fixture(scope="module")
def processes() -> dict[int, PythonProcess]:
    """A PythonProcess per minor (from live children), to give hostile memory a real layout."""
    out = {}
    for version in PYENV:
        minor = int(version.split(".")[1])
        with child(
            PYENV_ROOT / version / "bin" / f"python3.{minor}", "print('{}', flush=True); input()"
        ) as kid:
            out[minor] = kid.process
    return out


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=4096), minor=st.sampled_from(sorted(LAYOUTS)))
def test_garbage_memory_never_raises(processes: dict[int, PythonProcess], data: bytes, minor: int) -> None:
    """Whatever the memory holds, read() returns None or a dict of names, in a bounded number of reads."""
    process = processes[minor]
    mem = RandomMemory(data)
    reader = NameReader(process, mem, LAYOUTS[minor])  # type: ignore[arg-type]
    got = reader.read()
    assert got is None or all(isinstance(k, int) and isinstance(v, str) for k, v in got.items())
    assert mem.reads < 100_000
