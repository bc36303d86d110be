"""CRuby in one running process: which mapped file it is, its load bias, and its execution contexts.

`find_ruby` does the whole job from /proc for tests, the reference walker and local tools; it never
raises, and says in one line why a process has no walkable Ruby. The execution context (EC) of the
thread a sample interrupts is the `ruby_current_ec` thread-local (`tls_execution_context`, given the
thread pointer BPF reads from the task); without one, the main ractor's running or main thread's EC.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetprof.interpreters.engine import EngineMatch, find_engine
from fleetprof.interpreters.ruby.discovery import (
    RubyBinary,
    RubyUnsupported,
    inspect_ruby_binary,
    is_ruby_name,
)
from fleetprof.process.memory import MemoryReader

NOT_RUBY = RubyUnsupported("no CRuby mapped (ruby or libruby*.so)", is_ruby=False)


@dataclass(frozen=True, slots=True)
class RubyProcess:
    """A process running the CRuby of `binary`, loaded at `bias` (runtime - ELF address)."""

    pid: int
    binary: RubyBinary
    bias: int
    start_time: int  # /proc/PID/stat starttime: a different value means a different process

    @property
    def vm_exec_range(self) -> tuple[int, int]:
        """[start, end) of rb_vm_exec in the process: the native frames Ruby frames interleave at."""
        start, size = self.binary.vm_exec
        return start + self.bias, start + self.bias + size

    def main_ractor(self, mem: MemoryReader) -> int | str:
        """The main ractor (rb_ractor_t *): ruby_single_main_ractor, else the VM's main_ractor."""
        binary, layout = self.binary, self.binary.layout
        if binary.single_main_ractor:
            ractor = mem.u64(binary.single_main_ractor + self.bias)
            if ractor:
                return ractor
        if not binary.current_vm_ptr:
            return "no main ractor (ruby_single_main_ractor is NULL and no ruby_current_vm_ptr)"
        vm = mem.u64(binary.current_vm_ptr + self.bias)
        ractor = mem.u64(vm + layout.vm_main_ractor) if vm else None
        return ractor or "ruby_current_vm_ptr unreadable or the VM has no main ractor"

    def execution_context(self, mem: MemoryReader) -> int | str:
        """The EC to walk without a thread pointer: the main ractor's running EC (the thread holding the
        GVL), else its main thread's (a thread waiting in a blocking call has released the GVL)."""
        layout = self.binary.layout
        ractor = self.main_ractor(mem)
        if isinstance(ractor, str):
            return ractor
        running = mem.u64(ractor + layout.ractor_running_ec)
        if running:
            return running
        thread = mem.u64(ractor + layout.ractor_main_thread)
        ec = mem.u64(thread + layout.thread_ec) if thread else None
        return ec or "main ractor has neither a running nor a main thread EC"

    def tls_execution_context(self, mem: MemoryReader, thread_pointer: int) -> int | str:
        """The `ruby_current_ec` of the thread whose fs base is `thread_pointer` (what BPF reads from
        task->thread.fsbase): through the TPOFF slot, or the module id's DTV entry."""
        tls = self.binary.tls
        if tls is None:
            return "no ruby_current_ec thread-local in this build"
        return tls.read(mem, self.bias, thread_pointer, "ruby_current_ec")


def find_ruby(pid: int) -> RubyProcess | RubyUnsupported:
    """The CRuby process `pid` runs, with its bias; else why not (NOT_RUBY when there is none).

    Candidates: the executable (a static ruby), then mapped files named like CRuby (libruby*.so under
    `ruby` or an embedding program); deleted files are skipped (their path now names another file).
    """
    found = find_engine(pid, is_ruby_name, inspect_ruby_binary, lambda b: isinstance(b, RubyBinary))
    if isinstance(found, EngineMatch):
        return RubyProcess(pid, found.binary, found.bias, found.start_time)
    if isinstance(found, str):
        return RubyUnsupported(found, is_ruby=not found.startswith("process "))
    return found or NOT_RUBY
