"""Perl in one running process: which mapped file holds the interpreter, its load bias, its interpreters.

`find_perl` does the whole job from /proc for tests, the reference walker and local tools; it never
raises, and says in one line why a process has no walkable Perl. The interpreter of the thread a sample
interrupts is its `PL_current_context` thread-local (`tls_interpreter`, given the thread pointer BPF reads
from the task); without one, `PL_curinterp` (the first interpreter: the only one of an unthreaded program).
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetprof.interpreters.engine import EngineMatch, find_engine
from fleetprof.interpreters.perl.discovery import (
    PerlBinary,
    PerlUnsupported,
    inspect_perl_binary,
    is_perl_name,
)
from fleetprof.process.memory import MemoryReader

NOT_PERL = PerlUnsupported("no Perl interpreter mapped (perl or libperl.so)", is_perl=False)


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
        return tls.read(mem, self.bias, thread_pointer, "PL_current_context")


def find_perl(pid: int) -> PerlProcess | PerlUnsupported:
    """The Perl interpreter process `pid` runs, with its bias; else why not (NOT_PERL when there is none).

    Candidates: the executable (Debian's `perl` links libperl statically), then mapped files named like
    Perl (libperl.so under a `perl` that NEEDs it, or an embedding program); deleted files are skipped.
    """
    found = find_engine(pid, is_perl_name, inspect_perl_binary, lambda b: isinstance(b, PerlBinary))
    if isinstance(found, EngineMatch):
        return PerlProcess(pid, found.binary, found.bias, found.start_time)
    if isinstance(found, str):
        return PerlUnsupported(found, is_perl=not found.startswith("process "))
    return found or NOT_PERL
