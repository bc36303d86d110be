"""CRuby in one running process: which mapped file it is, its load bias, and its execution contexts.

`find_ruby` does the whole job from /proc for tests, the reference walker and local tools; it never
raises, and says in one line why a process has no walkable Ruby. The execution context (EC) of the
thread a sample interrupts is the `ruby_current_ec` thread-local (`tls_execution_context`, given the
thread pointer BPF reads from the task); without one, the main ractor's running or main thread's EC.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fleetprof.interpreters.ruby.discovery import (
    RubyBinary,
    RubyUnsupported,
    inspect_ruby_binary,
    is_ruby_name,
)
from fleetprof.process.bias import file_bias
from fleetprof.process.maps import MapKind, parse_maps
from fleetprof.process.memory import MemoryReader
from fleetprof.process.procfs import ProcFS

NOT_RUBY = RubyUnsupported("no CRuby mapped (ruby or libruby*.so)", is_ruby=False)
TCB_DTV = 8  # glibc x86-64 tcbhead_t.dtv: the dynamic thread vector, 16-byte entries indexed by module id
DTV_ENTRY = 16


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
        if tls.tpoff_got:
            offset = mem.u64(tls.tpoff_got + self.bias)
            if offset is None:
                return "ruby_current_ec TPOFF slot unreadable"
            address = (thread_pointer + offset) & (2**64 - 1)
        else:
            module = mem.u64(tls.module_got + self.bias) if tls.module_got else None
            dtv = mem.u64(thread_pointer + TCB_DTV)
            if not module or not dtv:
                return "ruby_current_ec module id or thread vector unreadable"
            block = mem.u64(dtv + module * DTV_ENTRY)
            if not block or block == 2**64 - 1:  # TLS_DTV_UNALLOCATED: not touched by this thread yet
                return "libruby's TLS block not allocated in this thread"
            address = block + tls.offset
        return mem.u64(address) or "ruby_current_ec is NULL in this thread"


def find_ruby(pid: int) -> RubyProcess | RubyUnsupported:
    """The CRuby process `pid` runs, with its bias; else why not (NOT_RUBY when there is none).

    Candidates: the executable (a static ruby), then mapped files named like CRuby (libruby*.so under
    `ruby` or an embedding program); deleted files are skipped (their path now names another file).
    """
    procfs = ProcFS()
    try:
        start_time = procfs.stat(pid).start_time
        entries, _ = parse_maps(procfs.read_bytes(pid, "maps"))
        exe = procfs.exe(pid)
    except OSError as exc:
        return RubyUnsupported(f"process {pid} unreadable ({exc.strerror or exc})", is_ruby=False)
    mappings = [e for e in entries if e.kind is MapKind.FILE and not e.deleted]
    names = [exe] + [m.path for m in mappings if is_ruby_name(m.path)]
    unsupported: RubyUnsupported | None = None
    for path in dict.fromkeys(name for name in names if name):
        readable = procfs.rooted(pid, path)
        readable = readable if os.path.exists(readable) else path
        found = inspect_ruby_binary(readable)
        if isinstance(found, RubyUnsupported):
            unsupported = unsupported or found
            continue
        if found is None:
            continue
        bias = file_bias(readable, [m for m in mappings if m.path == path])
        if bias is None:
            unsupported = unsupported or RubyUnsupported(f"{path}: no mapping matches its PT_LOADs")
            continue
        return RubyProcess(pid, found, bias, start_time)
    return unsupported or NOT_RUBY
