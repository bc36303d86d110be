"""PHP support for the profiler core: the Zend engine found in `php`, `php-fpm`, `php-cgi` or `libphp*.so`,
execute_ex as its VM loop, `php_procs` per process, frames named from the zend_function in process memory
(checked against the cookie BPF computed, so a reused address is not named after another function)."""

from __future__ import annotations

from fleetprof.agent.runtime import RuntimeProcess, RuntimeSupport, Unsupported
from fleetprof.interpreters.php.discovery import PhpBinary, PhpUnsupported, inspect_php_binary, is_php_name
from fleetprof.interpreters.php.procinfo import php_func_cookie, php_proc_info
from fleetprof.interpreters.php.symbolizer import RUNTIME, FunctionReader
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame

UNKNOWN_PHP = Frame(kind=FrameKind.INTERPRETED, function="<php frame>", runtime=RUNTIME)


class PhpSupport(RuntimeSupport[PhpBinary]):
    """The Zend engine's processes: `php_procs`, execute_ex in `interp_ranges`, FRAME_PHP named."""

    name = "php"
    frame_kind = layout.FRAME_PHP
    interp_kind = layout.INTERP_PHP

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
