"""Ruby support for the profiler core: CRuby found in `libruby*.so` (or a `ruby` executable), rb_vm_exec as
its VM loop, `ruby_procs` per process (where each thread's execution context lives), frames named from the
iseq and method entry in process memory."""

from __future__ import annotations

from fleetprof.agent.runtime import RuntimeProcess, RuntimeSupport, Unsupported
from fleetprof.interpreters.ruby.discovery import (
    RubyBinary,
    RubyUnsupported,
    inspect_ruby_binary,
    is_ruby_name,
)
from fleetprof.interpreters.ruby.procinfo import rebuild_pc, ruby_proc_info
from fleetprof.interpreters.ruby.symbolizer import RUNTIME, RubyNamer
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame

UNKNOWN_RUBY = Frame(kind=FrameKind.INTERPRETED, function="<ruby frame>", runtime=RUNTIME)


class RubySupport(RuntimeSupport[RubyBinary]):
    """CRuby's processes: `ruby_procs`, rb_vm_exec in `interp_ranges`, FRAME_RUBY named."""

    name = "ruby"
    frame_kind = layout.FRAME_RUBY
    interp_kind = layout.INTERP_RUBY

    def is_candidate(self, path: str) -> bool:
        """ruby* or libruby*.so*."""
        return is_ruby_name(path)

    def inspect(self, path: str, file_id: str) -> RubyBinary | None:
        """The interpreter in the file (cached per file id by discovery)."""
        found = inspect_ruby_binary(path, file_id)
        if isinstance(found, RubyUnsupported):
            raise Unsupported(found.reason)
        return found

    def vm_ranges(self, binary: RubyBinary) -> list[tuple[int, int]]:
        """rb_vm_exec."""
        start, size = binary.vm_exec
        return [(start, start + size)]

    def proc_info(self, binary: RubyBinary, bias: int) -> bytes:
        """libruby's TLS slot for the execution context and the layout's offsets."""
        info = ruby_proc_info(binary, bias)
        if info is None:
            raise Unsupported(
                f"Ruby {binary.version[0]}.{binary.version[1]}: ruby_current_ec is not a dynamic TLS variable"
            )
        return bytes(info)

    def name_frame(self, proc: RuntimeProcess[RubyBinary], raw: RawFrame) -> Frame | None:
        """`Class#method (file.rb:LINE)`, `block in …`, or a C function's `Class#name`."""
        mem = proc.memory()
        if mem is None:
            return None
        binary = proc.binary
        if proc.namer is None:
            table = binary.global_symbols
            proc.namer = RubyNamer(mem, binary.layout, table + proc.bias if table else 0)
        namer: RubyNamer = proc.namer  # type: ignore[assignment]
        iseq, entry, pc = raw.id, raw.addr, 0
        if iseq:
            lay = binary.layout
            body = mem.u64(iseq + lay.iseq_body)
            encoded = mem.u64(body + lay.body_iseq_encoded) if body else None
            if not encoded:
                return None
            pc = rebuild_pc(raw.aux, encoded)
        frame = namer.frame(iseq, pc, entry)
        return None if isinstance(frame, str) else frame

    def unknown(self) -> Frame:
        """`<ruby frame>`."""
        return UNKNOWN_RUBY
