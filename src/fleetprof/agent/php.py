"""PHP support for the profiler core: the Zend engine found in `php`, `php-fpm`, `php-cgi` or `libphp*.so`,
execute_ex as its VM loop, `php_procs` per process, frames named from the zend_function in process memory
(checked against the cookie BPF computed, so a reused address is not named after another function).

A forked child the agent has not scanned (PHP-FPM's workers, forked by the master) is walked in BPF with its
parent's info; its frames are named from its own memory once a stack of it shows up (`_adopt`)."""

from __future__ import annotations

import os

from fleetprof.agent.runtime import RuntimeProcess, RuntimeSupport, Unsupported
from fleetprof.interpreters.php.discovery import PhpBinary, PhpUnsupported, inspect_php_binary, is_php_name
from fleetprof.interpreters.php.procinfo import php_func_cookie, php_proc_info
from fleetprof.interpreters.php.symbolizer import RUNTIME, FunctionReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey, decode_frames

UNKNOWN_PHP = Frame(kind=FrameKind.INTERPRETED, function="<php frame>", runtime=RUNTIME)
ANCESTRY = 4  # how far up a forked child's parents the registered engine process is looked for


def parent_pid(pid: int) -> int:
    """The parent of `pid` (from /proc/PID/stat), 0 when it is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else 0


class PhpSupport(RuntimeSupport[PhpBinary]):
    """The Zend engine's processes: `php_procs`, execute_ex in `interp_ranges`, FRAME_PHP named."""

    name = "php"
    frame_kind = layout.FRAME_PHP
    interp_kind = layout.INTERP_PHP
    _adopted: set[int] | None = None  # forked children named through a registered ancestor

    def on_new_stack(self, key: StackKey) -> None:
        """Name the PHP frames of a new stack, adopting an unscanned forked child first."""
        if key.pid not in self._procs:
            raws = decode_frames(key.frames[key.num_kernel * layout.FRAME_SIZE :])
            if not any(raw.kind == self.frame_kind for raw in raws):
                return
            self._adopt(key.pid)
        super().on_new_stack(key)

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The named frame, adopting an unscanned forked child first."""
        self._adopt(pid)
        return super().resolve(pid, raw)

    def _adopt(self, pid: int) -> None:
        """Register `pid` like its nearest registered ancestor when it is an unscanned forked child (BPF
        walked it with that ancestor's info), so its frames are read from its own memory."""
        if pid in self._procs or not os.path.exists(f"/proc/{pid}"):
            return
        if self._adopted is None:
            self._adopted = set()
        ancestor = pid
        for _ in range(ANCESTRY):
            ancestor = parent_pid(ancestor)
            source = self._procs.get(ancestor)
            if source is not None:
                break
        else:
            return
        with self._lock:
            for gone in [p for p in self._adopted if not os.path.exists(f"/proc/{p}")]:
                self._adopted.discard(gone)
                proc = self._procs.pop(gone, None)
                if proc is not None:
                    proc.close()
            self._procs[pid] = RuntimeProcess(pid, source.binary, source.bias)
            self._adopted.add(pid)

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
        """&EG(current_execute_data) in the process and the layout's offsets."""
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
