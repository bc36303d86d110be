"""V8 support for the profiler core: V8 found in `node` (or `libnode.so`) by its postmortem metadata, the
embedded builtins as the range where native frames may stand for JavaScript ones, `v8_procs` per process
(frame slots and object offsets), FRAME_V8 named from the SharedFunctionInfo, bytecode and Code in process
memory."""

from __future__ import annotations

from fleetprof.agent.runtime import InliningRuntimeSupport, RuntimeProcess, Unsupported
from fleetprof.interpreters.v8.discovery import V8Binary, V8Unsupported, inspect_v8_binary, is_v8_name
from fleetprof.interpreters.v8.procinfo import v8_proc_info
from fleetprof.interpreters.v8.symbolizer import RUNTIME, V8Namer
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame

UNKNOWN_V8 = Frame(kind=FrameKind.INTERPRETED, function="<javascript frame>", runtime=RUNTIME)


class V8Support(InliningRuntimeSupport[V8Binary]):
    """Node.js processes: `v8_procs`, the builtins in `interp_ranges`, FRAME_V8 named."""

    name = "v8"
    frame_kind = layout.FRAME_V8
    interp_kind = layout.INTERP_V8

    def is_candidate(self, path: str) -> bool:
        """node, nodejs or libnode.so*."""
        return is_v8_name(path)

    def inspect(self, path: str, file_id: str) -> V8Binary | None:
        """The engine in the file (cached per file id by discovery)."""
        found = inspect_v8_binary(path, file_id)
        if isinstance(found, V8Unsupported):
            raise Unsupported(found.reason)
        return found

    def vm_ranges(self, binary: V8Binary) -> list[tuple[int, int]]:
        """The embedded builtins: the interpreter and the builtins JavaScript frames run in."""
        return [binary.builtins]

    def proc_info(self, binary: V8Binary, bias: int) -> bytes:
        """The frame slots and object offsets (the same for every process of the binary)."""
        return bytes(v8_proc_info(binary))

    def name_frames(self, proc: RuntimeProcess[V8Binary], raw: RawFrame) -> tuple[Frame, ...] | None:
        """The frames a FRAME_V8 stands for, root first: an optimized function and what it inlined."""
        mem = proc.memory()
        if mem is None:
            return None
        if proc.namer is None:
            proc.namer = V8Namer(mem, proc.binary.layout, proc.binary.bytecode_sizes)
        namer: V8Namer = proc.namer  # type: ignore[assignment]
        return namer.frames(raw.id, raw.addr, raw.aux)

    def unknown(self) -> Frame:
        """`<javascript frame>`."""
        return UNKNOWN_V8
