"""Mapped files: ELF facts cached per (dev, inode, size, mtime), one open fd per file id, refcounted.

Keeping an fd open gives every file id a stable path (`/proc/AGENT_PID/fd/N`) that reads the very file
the process mapped, even after the process exits or the file is deleted or replaced on disk. The fd
is closed `linger_s` seconds after the last mapping using it goes, so late symbolization still works.
"""

from __future__ import annotations

import enum
import errno
import os
import stat
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetprof.elf.reader import ElfError, ElfInfo, read_elf_info
from fleetprof.process.counters import Counters
from fleetprof.process.fileid import file_id_from_build_id, file_id_from_content
from fleetprof.process.procfs import failure_reason

_FD_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE})
StatKey = tuple[int, int, int, int]  # (st_dev, st_ino, st_size, st_mtime_ns)


class FileStatus(enum.Enum):
    """How much the tracker knows about a mapping's file."""

    OK = "ok"  # ELF parsed: build id and load bias from its program headers
    BAD_ELF = "bad_elf"  # not an ELF file or corrupt: content-hash file id, bias = start - offset
    UNREADABLE = "unreadable"  # the file could not be opened: no file id
    NO_FILE = "no_file"  # anonymous memory (JIT code, [vsyscall]): nothing to read


class FileUnavailable(Exception):
    """No candidate path could be opened; `reason` is a counter name (gone, permission, io, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FileFacts:
    """What one file is: its id, build id and parsed ELF facts (None when not a usable ELF)."""

    file_id: str
    build_id: str
    elf: ElfInfo | None
    error: str  # one line when `elf` is None

    @property
    def status(self) -> FileStatus:
        """OK when the ELF parsed, BAD_ELF otherwise."""
        return FileStatus.OK if self.elf is not None else FileStatus.BAD_ELF


@dataclass(slots=True)
class _Held:
    fd: int
    path: str
    refs: int
    permanent: bool = False


def _stat_key(st: os.stat_result) -> StatKey:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def fd_path(fd: int) -> str:
    """A path to our own open fd that other processes (addr2line, a symbolizer child) can open too."""
    return f"/proc/{os.getpid()}/fd/{fd}"


def examine(fd: int) -> FileFacts:
    """Read the ELF facts and file id of the open file `fd`; a corrupt ELF gets a content-hash id."""
    path = f"/proc/self/fd/{fd}"
    try:
        elf: ElfInfo | None = read_elf_info(path)
        error = ""
    except ElfError as exc:
        elf, error = None, str(exc).removeprefix(f"{path}: ")
    except Exception as exc:  # hostile input can trip any pyelftools path; it must only degrade the file
        elf, error = None, f"corrupt ELF file ({type(exc).__name__}: {exc})"
    build_id = elf.build_id if elf is not None else ""
    fid = file_id_from_build_id(build_id) if build_id else file_id_from_content(fd)
    return FileFacts(file_id=fid, build_id=build_id, elf=elf, error=error)


class FileTable:
    """Open files by file id with reference counts, plus an LRU of ELF facts by stat key."""

    def __init__(
        self,
        counters: Counters,
        linger_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        facts_cache_size: int = 8192,
    ) -> None:
        self._counters = counters
        self._linger_s = linger_s
        self._clock = clock
        self._facts_cache_size = facts_cache_size
        self._lock = threading.RLock()
        self._facts: OrderedDict[StatKey, FileFacts] = OrderedDict()
        self._held: dict[str, _Held] = {}
        self._lingering: dict[str, float] = {}

    def acquire(self, candidates: Sequence[str]) -> tuple[FileFacts, str]:
        """Facts and stable open path of the first openable candidate, adding one reference to it.

        Raises FileUnavailable (with the last failure's reason) when no candidate can be read.
        """
        reason = "no_path"
        for candidate in candidates:
            try:
                return self._acquire_one(candidate)
            except OSError as exc:
                reason = "fd_limit" if exc.errno in _FD_EXHAUSTED else failure_reason(exc)
                self._counters.inc(f"file_open_{reason}")
        raise FileUnavailable(reason)

    def _acquire_one(self, candidate: str) -> tuple[FileFacts, str]:
        st = os.stat(candidate)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{candidate}: not a regular file")
        with self._lock:
            facts = self._cached_facts(_stat_key(st))
            if facts is not None and facts.file_id in self._held:
                self._counters.inc("elf_cache_hit")
                return facts, self._ref(facts.file_id)
        try:
            fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if facts is None or exc.errno not in _FD_EXHAUSTED:
                raise
            self._counters.inc("fd_limit_unstable_path")
            return facts, candidate
        try:
            key = _stat_key(os.fstat(fd))
            with self._lock:
                facts = self._cached_facts(key)
            if facts is None:
                self._counters.inc("elf_parsed")
                facts = examine(fd)
                if facts.elf is None:
                    self._counters.inc("elf_corrupt")
                with self._lock:
                    self._facts[key] = facts
                    while len(self._facts) > self._facts_cache_size:
                        self._facts.popitem(last=False)
            else:
                self._counters.inc("elf_cache_hit")
        except BaseException:
            os.close(fd)
            raise
        with self._lock:
            if facts.file_id in self._held:
                os.close(fd)
                return facts, self._ref(facts.file_id)
            self._held[facts.file_id] = _Held(fd=fd, path=fd_path(fd), refs=1)
            return facts, self._held[facts.file_id].path

    def _cached_facts(self, key: StatKey) -> FileFacts | None:
        facts = self._facts.get(key)
        if facts is not None:
            self._facts.move_to_end(key)
        return facts

    def _ref(self, file_id: str) -> str:
        held = self._held[file_id]
        held.refs += 1
        self._lingering.pop(file_id, None)
        return held.path

    def pin(self, file_id: str) -> str:
        """Add a reference to an open file id and return its path; "" when it is not open."""
        with self._lock:
            return self._ref(file_id) if file_id in self._held else ""

    def release(self, file_id: str) -> None:
        """Drop one reference; the fd lingers `linger_s` seconds after the last one, then closes."""
        with self._lock:
            held = self._held.get(file_id)
            if held is None or held.permanent or held.refs <= 0:
                return
            held.refs -= 1
            if held.refs == 0:
                self._lingering[file_id] = self._clock() + self._linger_s
        self.expire()

    def add_permanent(self, file_id: str, path: str) -> None:
        """Register a file that is never closed or counted (the vDSO image in the cache directory)."""
        with self._lock:
            if file_id not in self._held:
                self._held[file_id] = _Held(fd=-1, path=path, refs=1, permanent=True)

    def open_path(self, file_id: str) -> str:
        """The stable path of an open (or lingering) file id, "" when it is not open."""
        held = self._held.get(file_id)
        return held.path if held is not None else ""

    def expire(self) -> int:
        """Close files whose linger time is over; returns how many were closed."""
        now = self._clock()
        closed = 0
        with self._lock:
            for file_id, deadline in list(self._lingering.items()):
                if deadline <= now:
                    del self._lingering[file_id]
                    held = self._held.pop(file_id)
                    os.close(held.fd)
                    closed += 1
        return closed

    def refs(self, file_id: str) -> int:
        """Current reference count of a file id (0 when lingering or unknown)."""
        held = self._held.get(file_id)
        return held.refs if held is not None else 0

    @property
    def open_files(self) -> int:
        """How many fds the table holds open, lingering ones included."""
        return sum(1 for held in self._held.values() if not held.permanent)

    @property
    def lingering(self) -> int:
        """How many open fds have no reference left and wait to be closed."""
        return len(self._lingering)

    def close(self) -> None:
        """Close every fd now."""
        with self._lock:
            for held in self._held.values():
                if not held.permanent:
                    os.close(held.fd)
            self._held.clear()
            self._lingering.clear()
