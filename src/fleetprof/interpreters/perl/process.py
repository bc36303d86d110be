"""Perl in one running process: which mapped file holds the interpreter, its load bias, its interpreters.

`find_perl` does the whole job from /proc for tests, the reference walker and local tools; it never
raises, and says in one line why a process has no walkable Perl. The interpreter of the thread a sample
interrupts is its `PL_current_context` thread-local (`tls_interpreter`, given the thread pointer BPF reads
from the task); without one, `PL_curinterp` (the first interpreter: the only one of an unthreaded program).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fleetprof.interpreters.perl.discovery import (
    PerlBinary,
    PerlUnsupported,
    inspect_perl_binary,
    is_perl_name,
)
from fleetprof.process.bias import file_bias
from fleetprof.process.maps import MapKind, parse_maps
from fleetprof.process.memory import MemoryReader
from fleetprof.process.procfs import ProcFS

NOT_PERL = PerlUnsupported("no Perl interpreter mapped (perl or libperl.so)", is_perl=False)
TCB_DTV = 8  # glibc x86-64 tcbhead_t.dtv: the dynamic thread vector, 16-byte entries indexed by module id
DTV_ENTRY = 16
MASK64 = 2**64 - 1


@dataclass(frozen=True, slots=True)
class PerlProcess:
    """A process running the Perl of `binary`, loaded at `bias` (runtime - ELF address)."""

    pid: int
    binary: PerlBinary
    bias: int
    start_time: int  # /proc/PID/stat starttime: a different value means a different process

    @property
    def runops_ranges(self) -> list[tuple[int, int]]:
        """[start, end) of each VM loop function in the process: the native frames Perl frames hang off."""
        return [(start + self.bias, start + self.bias + size) for start, size in self.binary.runops]

    def interpreter(self, mem: MemoryReader) -> int | str:
        """PL_curinterp: the first interpreter (the running one unless the program starts ithreads)."""
        found = mem.u64(self.binary.curinterp + self.bias)
        if found is None:
            return "PL_curinterp unreadable"
        return found or "PL_curinterp is NULL (the interpreter is not constructed yet)"

    def tls_interpreter(self, mem: MemoryReader, thread_pointer: int) -> int | str:
        """The `PL_current_context` of the thread whose fs base is `thread_pointer` (what BPF reads from
        task->thread.fsbase): through the TPOFF slot, or the module id's DTV entry."""
        tls = self.binary.tls
        if tls is None:
            return "no PL_current_context thread-local in this build"
        if tls.tpoff_got:
            offset = mem.u64(tls.tpoff_got + self.bias)
            if offset is None:
                return "PL_current_context TPOFF slot unreadable"
            address = (thread_pointer + offset) & MASK64
        else:
            module = mem.u64(tls.module_got + self.bias) if tls.module_got else None
            dtv = mem.u64(thread_pointer + TCB_DTV)
            if not module or not dtv:
                return "PL_current_context module id or thread vector unreadable"
            block = mem.u64(dtv + module * DTV_ENTRY)
            if not block or block == MASK64:  # TLS_DTV_UNALLOCATED: not touched by this thread yet
                return "libperl's TLS block not allocated in this thread"
            address = block + tls.offset
        return mem.u64(address) or "PL_current_context is NULL in this thread (not a Perl thread)"


def find_perl(pid: int) -> PerlProcess | PerlUnsupported:
    """The Perl interpreter process `pid` runs, with its bias; else why not (NOT_PERL when there is none).

    Candidates: the executable (Debian's `perl` links libperl statically), then mapped files named like
    Perl (libperl.so under a `perl` that NEEDs it, or an embedding program); deleted files are skipped.
    """
    procfs = ProcFS()
    try:
        start_time = procfs.stat(pid).start_time
        entries, _ = parse_maps(procfs.read_bytes(pid, "maps"))
        exe = procfs.exe(pid)
    except OSError as exc:
        return PerlUnsupported(f"process {pid} unreadable ({exc.strerror or exc})", is_perl=False)
    mappings = [e for e in entries if e.kind is MapKind.FILE and not e.deleted]
    names = [exe] + [m.path for m in mappings if is_perl_name(m.path)]
    unsupported: PerlUnsupported | None = None
    for path in dict.fromkeys(name for name in names if name):
        readable = procfs.rooted(pid, path)
        readable = readable if os.path.exists(readable) else path
        found = inspect_perl_binary(readable)
        if isinstance(found, PerlUnsupported):
            unsupported = unsupported or found
            continue
        if found is None:
            continue
        bias = file_bias(readable, [m for m in mappings if m.path == path])
        if bias is None:
            unsupported = unsupported or PerlUnsupported(f"{path}: no mapping matches its PT_LOADs")
            continue
        return PerlProcess(pid, found, bias, start_time)
    return unsupported or NOT_PERL
