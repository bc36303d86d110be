"""What the PHP, Ruby and Perl support share: inspecting an ELF file for an interpreter engine once per file
id, finding the engine a running process maps (and its load bias), and reading a thread-local variable of
the engine through a thread's fs base, the way the BPF walkers do."""

from __future__ import annotations

import os
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from fleetprof.elf.reader import read_elf_info
from fleetprof.elf.view import ElfError, ElfView
from fleetprof.process.bias import file_bias
from fleetprof.process.fileid import file_id as compute_file_id
from fleetprof.process.maps import MapKind, parse_maps
from fleetprof.process.memory import MemoryReader
from fleetprof.process.procfs import ProcFS

R = TypeVar("R")  # a runtime's inspection result: its binary description or its "unsupported" reason
TCB_DTV = 8  # glibc x86-64 tcbhead_t.dtv: the dynamic thread vector, 16-byte entries indexed by module id
DTV_ENTRY = 16
MASK64 = 2**64 - 1


@dataclass(frozen=True, slots=True)
class EngineUnsupported:
    """Why fleetprof cannot walk a runtime's frames here; `reason` is the one line the error frame
    `[unwind: <RUNTIME>: reason]` shows. Each runtime subclasses it with its RUNTIME."""

    reason: str
    RUNTIME: ClassVar[str] = ""

    @property
    def marker(self) -> str:
        """The error frame's name for stacks of this process."""
        return f"[unwind: {self.RUNTIME}: {self.reason}]"


class EngineFiles(Generic[R]):
    """One runtime's ELF inspection, `describe(image, path, file_id)`, cached per file id for the life of
    the process; never raises (None: no engine in the file, or not a 64-bit little-endian ELF)."""

    def __init__(self, describe: Callable[[ElfView, str, str], R | None]) -> None:
        self._describe = describe
        self._cache: dict[str, R | None] = {}
        self._lock = threading.Lock()

    def inspect(self, path: str | Path, file_id: str | None = None) -> R | None:
        """The cached description of the engine in `path` (its file id computed when not given)."""
        spath = str(path)
        if file_id is None:
            try:
                file_id = compute_file_id(spath, read_elf_info(spath).build_id)
            except (ElfError, OSError):
                return None
        with self._lock:
            if file_id in self._cache:
                return self._cache[file_id]
        result = self._read(spath, file_id)
        with self._lock:
            self._cache[file_id] = result
        return result

    def _read(self, path: str, file_id: str) -> R | None:
        try:
            with ElfView(path) as image:
                if image.elf_class != 64 or not image.little_endian:
                    return None
                return self._describe(image, path, file_id)
        except (ElfError, OSError, struct.error, ValueError):
            return None


@dataclass(frozen=True, slots=True)
class EngineMatch(Generic[R]):
    """The engine a process maps: its description, the load bias of its file, the process's start time."""

    binary: R
    bias: int
    start_time: int  # /proc/PID/stat starttime: a different value means a different process


def find_engine(
    pid: int,
    is_name: Callable[[str], bool],
    inspect: Callable[[str], R | None],
    is_supported: Callable[[R], bool],
) -> EngineMatch[R] | R | str | None:
    """The engine process `pid` runs: a match; else the first problem met, an unsupported description (R)
    or a one-line reason (str: the process or the engine's mapping can't be read); None when it maps no
    engine. Candidates: the executable, then mapped files `is_name` accepts; deleted files are skipped
    (their path now names another file)."""
    procfs = ProcFS()
    try:
        start_time = procfs.stat(pid).start_time
        entries, _ = parse_maps(procfs.read_bytes(pid, "maps"))
        exe = procfs.exe(pid)
    except OSError as exc:
        return f"process {pid} unreadable ({exc.strerror or exc})"
    mappings = [e for e in entries if e.kind is MapKind.FILE and not e.deleted]
    names = [exe] + [m.path for m in mappings if is_name(m.path)]
    problem: R | str | None = None  # the first engine met that can't be walked
    for path in dict.fromkeys(name for name in names if name):
        readable = procfs.rooted(pid, path)
        readable = readable if os.path.exists(readable) else path
        found = inspect(readable)
        if found is None:
            continue
        if not is_supported(found):
            problem = problem if problem is not None else found
            continue
        bias = file_bias(readable, [m for m in mappings if m.path == path])
        if bias is None:
            problem = problem if problem is not None else f"{path}: no mapping matches its PT_LOADs"
            continue
        return EngineMatch(found, bias, start_time)
    return problem


@dataclass(frozen=True, slots=True)
class ThreadLocal:
    """Where an engine's `__thread` variable lives in each thread: `offset` into the file's TLS block, found
    through the dynamic thread vector (module id in the GOT slot `module_got`) or a fixed thread-pointer
    offset (the GOT slot `tpoff_got`, initial-exec code); 0 marks a slot the file does not have."""

    offset: int  # st_value of the variable: its offset inside the module's TLS block
    module_got: int  # ELF address of the R_X86_64_DTPMOD64 slot (holds the module id once loaded)
    tpoff_got: int  # ELF address of the R_X86_64_TPOFF64 slot (holds the variable's offset from tp)

    def read(self, mem: MemoryReader, bias: int, thread_pointer: int, name: str) -> int | str:
        """The variable's value in the thread whose fs base is `thread_pointer` (what BPF reads from
        task->thread.fsbase), or why it can't be had; `name` is the variable's, for the reasons."""
        if self.tpoff_got:
            offset = mem.u64(self.tpoff_got + bias)
            if offset is None:
                return f"{name} TPOFF slot unreadable"
            address = (thread_pointer + offset) & MASK64
        else:
            module = mem.u64(self.module_got + bias) if self.module_got else None
            dtv = mem.u64(thread_pointer + TCB_DTV)
            if not module or not dtv:
                return f"{name} module id or thread vector unreadable"
            block = mem.u64(dtv + module * DTV_ENTRY)
            if not block or block == MASK64:  # TLS_DTV_UNALLOCATED: not touched by this thread yet
                return f"{name}: the TLS block is not allocated in this thread"
            address = block + self.offset
        return mem.u64(address) or f"{name} is NULL in this thread"
