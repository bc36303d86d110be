"""V8 support for the profiler core: V8 found in `node` (or `libnode.so`) by its postmortem metadata, the
embedded builtins as the range where native frames may stand for JavaScript ones, `v8_procs` per process
(frame slots and object offsets), FRAME_V8 named from the SharedFunctionInfo, bytecode and Code in process
memory."""

from __future__ import annotations

from fleetprof.agent.runtime import FrameKey, RuntimeProcess, RuntimeSupport, Unsupported
from fleetprof.bpf.libbpf import Map
from fleetprof.interpreters.v8.discovery import V8Binary, V8Unsupported, inspect_v8_binary, is_v8_name
from fleetprof.interpreters.v8.procinfo import v8_proc_info
from fleetprof.interpreters.v8.symbolizer import RUNTIME, V8Namer
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame

UNKNOWN_V8 = Frame(kind=FrameKind.INTERPRETED, function="<javascript frame>", runtime=RUNTIME)


class V8Support(RuntimeSupport[V8Binary]):
    """Node.js processes: `v8_procs`, the builtins in `interp_ranges`, FRAME_V8 named."""

    name = "v8"
    frame_kind = layout.FRAME_V8
    interp_kind = layout.INTERP_V8

    def __init__(self, procs: Map, interp_ranges: Map) -> None:
        super().__init__(procs, interp_ranges)
        self._chains: dict[FrameKey, tuple[Frame, ...]] = {}

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

    def name_frame(self, proc: RuntimeProcess[V8Binary], raw: RawFrame) -> Frame | None:
        """`function (file.js:LINE)`: the outermost of the frames `name_frames` gives."""
        frames = self.name_frames(proc, raw)
        return frames[0] if frames else None

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

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The outermost frame of `resolve_frames` (naming them all while the process lives)."""
        return self.resolve_frames(pid, raw)[0]

    def resolve_frames(self, pid: int, raw: RawFrame) -> tuple[Frame, ...]:
        """Every frame a FRAME_V8 stands for (inlined functions after their caller), named once."""
        key = (pid, raw.id, raw.addr, raw.aux)
        chain = self._chains.get(key)
        if chain is not None:
            return chain
        proc = self._procs.get(pid)
        named = self.name_frames(proc, raw) if proc is not None and proc.memory() is not None else None
        if not named:
            self.unnamed += 1
            return (self.unknown(),)
        self.named += 1
        self._chains[key] = named
        self.frames[key] = named[0]
        return named

    def forget(self, pids: set[int]) -> None:
        """Drop the frames of processes gone for good."""
        super().forget(pids)
        self._chains = {k: c for k, c in self._chains.items() if k[0] not in pids}
