"""PHP support for the profiler core: the Zend engine found in `php`, `php-fpm`, `php-cgi` or `libphp*.so`,
execute_ex as its VM loop, `php_procs` per process, frames named from the zend_function in process memory
(checked against the cookie BPF computed, so a reused address is not named after another function).

A forked child the agent has not scanned (PHP-FPM's workers, forked by the master) is walked in BPF with its
parent's info; once a stack of it shows up it is adopted: registered like its parent, named from its own
memory. opcache's JIT buffer (found in the maps at registration, and again on the process's new stacks while
it is unknown) goes into the process's info: BPF unwinds JIT'd code as execute_ex."""

from __future__ import annotations

import contextlib
import os
import struct
import time

from fleetprof.agent.runtime import RuntimeProcess, RuntimeSupport, Unsupported
from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.interpreters.php.discovery import PhpBinary, PhpUnsupported, inspect_php_binary, is_php_name
from fleetprof.interpreters.php.process import jit_buffer
from fleetprof.interpreters.php.procinfo import php_func_cookie, php_proc_info
from fleetprof.interpreters.php.symbolizer import RUNTIME, FunctionReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey

UNKNOWN_PHP = Frame(kind=FrameKind.INTERPRETED, function="<php frame>", runtime=RUNTIME)
ANCESTRY = 4  # how far up a forked child's parents the registered engine process is looked for
# A process's maps are read again for its JIT buffer (on its new stacks while the buffer is unknown: opcache
# makes it at startup, after the exec the process was registered at) at most every JIT_RECHECK_S, the first
# JIT_QUICK_READS times, then every JIT_SLOW_RECHECK_S (a process without the JIT keeps making new stacks).
JIT_RECHECK_S = 0.02
JIT_QUICK_READS = 50
JIT_SLOW_RECHECK_S = 5.0
_KIND_AT = 20  # struct frame.kind
_NO_ID = bytes(8)  # struct frame.id of code outside any file


def parent_pid(pid: int) -> int:
    """The parent of `pid` (from /proc/PID/stat), 0 when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else 0


def same_executable(a: int, b: int) -> bool:
    """Whether processes `a` and `b` run the same executable file (a fork that did not exec)."""
    try:
        one, two = os.stat(f"/proc/{a}/exe"), os.stat(f"/proc/{b}/exe")
    except OSError:
        return False
    return (one.st_dev, one.st_ino) == (two.st_dev, two.st_ino)


def _php_like(user: bytes) -> bool:
    """Whether a stack's user frames hold a PHP frame or anonymous code (an unscanned FPM worker's, or JIT
    code), read from the raw bytes: this runs for every new stack of every process on the host."""
    size = layout.FRAME_SIZE
    kinds = user[_KIND_AT::size]
    if layout.FRAME_PHP in kinds or layout.FRAME_NATIVE_RAW in kinds:
        return True
    return layout.FRAME_NATIVE in kinds and any(
        user[at : at + 8] == _NO_ID
        for at in range(0, len(user), size)
        if user[at + _KIND_AT] == layout.FRAME_NATIVE
    )


class PhpSupport(RuntimeSupport[PhpBinary]):
    """The Zend engine's processes: `php_procs`, execute_ex in `interp_ranges`, FRAME_PHP named."""

    name = "php"
    frame_kind = layout.FRAME_PHP
    interp_kind = layout.INTERP_PHP

    def __init__(self, procs: Map, interp_ranges: Map) -> None:
        super().__init__(procs, interp_ranges)
        self._adopted: set[int] = set()  # forked children registered through an ancestor
        self._orphans: set[int] = set()  # pids with PHP-like stacks but no registered ancestor
        self._jit: dict[int, tuple[int, int]] = {}  # pid -> the JIT buffer its php_procs entry holds
        self._jit_read: dict[int, tuple[float, int]] = {}  # pid -> when its maps were last read, how often

    def on_new_stack(self, key: StackKey) -> None:
        """Name the PHP frames of a new stack: first adopt an unscanned forked child (a stack with PHP frames
        or anonymous code), and look again for the JIT buffer of a process that had none (opcache may have
        made it since: an FPM master at startup, before it forks its workers)."""
        pid = key.pid
        if pid not in self._procs:
            if not _php_like(key.frames[key.num_kernel * layout.FRAME_SIZE :]) or not self._adopt(pid):
                return
        elif pid not in self._jit:
            self._find_jit(pid)
        super().on_new_stack(key)

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The named frame, adopting an unscanned forked child first."""
        if pid not in self._procs:
            self._adopt(pid)
        return super().resolve(pid, raw)

    def process_info(self, pid: int, binary: PhpBinary, bias: int) -> bytes:
        """&EG(current_execute_data), the layout's offsets and the JIT buffer, read from the maps now."""
        jit = jit_buffer(pid) if binary.jit_dispatch else None
        self._jit_read[pid] = (time.monotonic(), self._jit_read.get(pid, (0.0, 0))[1] + 1)
        if jit is None:
            self._jit.pop(pid, None)
        else:
            self._jit[pid] = jit
        current = binary.executor_globals + bias + binary.layout.eg_current_execute_data
        dispatch = binary.jit_dispatch + bias if binary.jit_dispatch else 0
        return bytes(php_proc_info(binary.layout, current, jit or (0, 0), dispatch))

    def process_gone(self, pid: int) -> None:
        """Forget a process (exit or exec), adopted or scanned."""
        super().process_gone(pid)
        self._adopted.discard(pid)
        self._orphans.discard(pid)
        self._jit.pop(pid, None)
        self._jit_read.pop(pid, None)

    def forget(self, pids: set[int]) -> None:
        """Drop what is known of processes gone for good."""
        super().forget(pids)
        self._orphans -= pids

    def _adopt(self, pid: int) -> bool:
        """Register `pid` like its nearest registered ancestor when it is a fork of it that did not exec
        (BPF walked it with the ancestor's info): its own php_procs entry, frames read from its memory."""
        if pid in self._orphans or not os.path.exists(f"/proc/{pid}"):
            return False
        ancestor, source = pid, None
        for _ in range(ANCESTRY):
            ancestor = parent_pid(ancestor)
            source = self._procs.get(ancestor)
            if source is not None or ancestor <= 1:
                break
        if source is None or not same_executable(pid, ancestor):
            self._orphans.add(pid)
            return False
        for gone in [p for p in self._adopted if not os.path.exists(f"/proc/{p}")]:
            self.process_gone(gone)
        info = self.process_info(pid, source.binary, source.bias)
        with self._lock:
            with contextlib.suppress(BpfError):  # the map is full: BPF goes on with the ancestor's entry
                self._procs_map.update(struct.pack("<I", pid), info)
            self._procs[pid] = RuntimeProcess(pid, source.binary, source.bias)
            self._adopted.add(pid)
        if pid in self._jit and ancestor not in self._jit:
            self._find_jit(ancestor)  # the buffer the child inherited: its next forks start with it
        return True

    def _find_jit(self, pid: int) -> None:
        """Read the maps of registered `pid` for its JIT buffer (at most every JIT_RECHECK_S) and, when
        found, put it in its php_procs entry."""
        proc = self._procs.get(pid)
        if proc is None or not proc.binary.jit_dispatch:
            return
        last, reads = self._jit_read.get(pid, (0.0, 0))
        if time.monotonic() - last < (JIT_RECHECK_S if reads < JIT_QUICK_READS else JIT_SLOW_RECHECK_S):
            return
        info = self.process_info(pid, proc.binary, proc.bias)
        if pid in self._jit:
            try:
                self._procs_map.update(struct.pack("<I", pid), info)
            except BpfError:
                self._jit.pop(pid, None)

    def is_candidate(self, path: str) -> bool:
        """php, php-fpm, php-cgi (with a version suffix) or libphp*.so."""
        return is_php_name(path)

    def inspect(self, path: str, file_id: str) -> PhpBinary | None:
        """The engine in the file (cached per file id by discovery)."""
        found = inspect_php_binary(path, file_id)
        if isinstance(found, PhpUnsupported):
            raise Unsupported(found.reason)
        return found

    def vm_ranges(self, binary: PhpBinary) -> list[tuple[int, int]]:
        """execute_ex."""
        start, size = binary.execute_ex
        return [(start, start + size)]

    def proc_info(self, binary: PhpBinary, bias: int) -> bytes:
        """&EG(current_execute_data) in the process and the layout's offsets (no JIT buffer: the maps of a
        process are read by `process_info`)."""
        current = binary.executor_globals + bias + binary.layout.eg_current_execute_data
        return bytes(php_proc_info(binary.layout, current))

    def name_frame(self, proc: RuntimeProcess[PhpBinary], raw: RawFrame) -> Frame | None:
        """`Class::method (file.php:LINE)` from the zend_function, when its cookie still matches."""
        mem = proc.memory()
        if mem is None:
            return None
        if proc.namer is None:
            proc.namer = FunctionReader(mem, proc.binary.layout)
        reader: FunctionReader = proc.namer  # type: ignore[assignment]
        lay = reader.layout
        head = mem.read(raw.id, max(lay.fn_name, lay.fn_scope) + 8)
        if head is None:
            return None
        name = int.from_bytes(head[lay.fn_name : lay.fn_name + 8], "little")
        scope = int.from_bytes(head[lay.fn_scope : lay.fn_scope + 8], "little")
        if php_func_cookie(name, scope, head[lay.fn_type]) != raw.aux:
            return None
        frame = reader.frame(raw.id, raw.addr)
        return None if isinstance(frame, str) else frame

    def unknown(self) -> Frame:
        """`<php frame>`."""
        return UNKNOWN_PHP
