"""HotSpot support for the profiler core: the JVM found in `libjvm.so` by its VM tables, `hotspot_procs` per
process (its code heaps, the interpreter's blob, the frame layout, read from the live JVM: a JVM still
starting is registered once its code cache and interpreter exist), FRAME_JVM named from Method*, nmethod
debug info and CodeBlob names in process memory."""

from __future__ import annotations

import time

from fleetprof.agent.runtime import InliningRuntimeSupport, RuntimeProcess, Unsupported
from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.interpreters.hotspot.discovery import (
    HotSpotBinary,
    HotSpotUnsupported,
    inspect_hotspot_binary,
    is_hotspot_name,
)
from fleetprof.interpreters.hotspot.layouts import HotSpotLayout
from fleetprof.interpreters.hotspot.process import layout_from_process
from fleetprof.interpreters.hotspot.procinfo import JVM_AUX_KIND_MASK, JVM_FRAME_COMPILED, hotspot_proc_info
from fleetprof.interpreters.hotspot.symbolizer import JVM_FRAME_STUB, RUNTIME, HotSpotNamer
from fleetprof.process.memory import ProcessMemory
from fleetprof.profile.model import Frame, FrameKind
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey

UNKNOWN_JVM = Frame(kind=FrameKind.INTERPRETED, function="<java frame>", runtime=RUNTIME)
COMPILED_BLOBS = frozenset({"[jvm: nmethod]", "[jvm: native nmethod]"})
RETRY_S = 0.05  # a starting JVM's registration is retried at most this often
PENDING_FOR_S = 120.0  # and given up after this long


class HotSpotSupport(InliningRuntimeSupport[HotSpotBinary]):
    """JVM processes: `hotspot_procs` (nothing in `interp_ranges`: Java code lives in the code cache);
    FRAME_JVM named."""

    name = "jvm"
    frame_kind = layout.FRAME_JVM
    interp_kind = 0

    def __init__(self, procs: Map, interp_ranges: Map) -> None:
        super().__init__(procs, interp_ranges)
        self._layouts: dict[int, HotSpotLayout] = {}  # pid -> layout read from its memory
        self._pending: dict[
            int, tuple[HotSpotBinary, int, float, float]
        ] = {}  # pid -> binary, bias, since, last

    def is_candidate(self, path: str) -> bool:
        """libjvm.so."""
        return is_hotspot_name(path)

    def inspect(self, path: str, file_id: str) -> HotSpotBinary | None:
        """The VM in the file (cached per file id by discovery)."""
        found = inspect_hotspot_binary(path, file_id)
        if isinstance(found, HotSpotUnsupported):
            raise Unsupported(found.reason)
        return found

    def vm_ranges(self, binary: HotSpotBinary) -> list[tuple[int, int]]:
        """None: Java frames are found by the code cache, not by a range of libjvm."""
        return []

    def proc_info(self, binary: HotSpotBinary, bias: int) -> bytes:
        """Unused: the info comes from the process (`process_info`)."""
        raise Unsupported("a JVM is described from its process")

    def process_info(self, pid: int, binary: HotSpotBinary, bias: int) -> bytes | None:
        """The code heaps, the interpreter's blob and the layout, read from the JVM; None while it starts."""
        try:
            mem = ProcessMemory(pid)
        except OSError:
            return None
        try:
            found = layout_from_process(mem, bias, binary)
            if isinstance(found, str):
                raise Unsupported(found)
            info = hotspot_proc_info(mem, bias, found, binary.version[0])
        finally:
            mem.close()
        if info is None:
            now = time.monotonic()
            since = self._pending.get(pid, (binary, bias, now, now))[2]
            self._pending[pid] = (binary, bias, since, now)
            return None
        self._pending.pop(pid, None)
        self._layouts[pid] = found
        return bytes(info)

    def _register_file(self, key: int, binary: HotSpotBinary) -> None:
        """Remember the file (no `interp_ranges` entry: nothing in libjvm stands for Java frames)."""
        self._files[key] = binary

    def file_flags(self, key: int) -> int:
        """0: libjvm's mappings are plain native code, whether or not the process is registered."""
        return 0

    def interpreter_flags(self, pid: int, m: object) -> int:
        """Registers the JVM (no mapping flag: libjvm's own frames are plain native code)."""
        super().interpreter_flags(pid, m)  # type: ignore[arg-type]
        return 0

    def on_new_stack(self, key: StackKey) -> None:
        """Finish registering a JVM that was starting, then name its frames."""
        pending = self._pending.get(key.pid)
        if pending is not None:
            binary, bias, since, last = pending
            now = time.monotonic()
            if now - since > PENDING_FOR_S:
                self._pending.pop(key.pid, None)
                self.unsupported[key.pid] = "the JVM's code cache could not be read"
            elif now - last >= RETRY_S:
                self._retry(key.pid, binary, bias)
        super().on_new_stack(key)

    def _retry(self, pid: int, binary: HotSpotBinary, bias: int) -> None:
        try:
            info = self.process_info(pid, binary, bias)
        except Unsupported as exc:
            self._pending.pop(pid, None)
            self.unsupported[pid] = str(exc)
            return
        if info is None:
            return
        with self._lock:
            try:
                self._procs_map.update(pid.to_bytes(4, "little"), info)
            except BpfError as exc:
                self.unsupported[pid] = f"{self.name}: per-process map full ({exc})"
                return
            self._procs[pid] = RuntimeProcess(pid, binary, bias)

    def name_frames(self, proc: RuntimeProcess[HotSpotBinary], raw: RawFrame) -> tuple[Frame, ...] | None:
        """`pkg.Class.method (File.java:LINE)` frames, a compiled frame's inlined methods after it; a VM stub
        as `[jvm: its name]`."""
        mem = proc.memory()
        layout_ = self._layouts.get(proc.pid)
        if mem is None or layout_ is None:
            return None
        if proc.namer is None:
            proc.namer = HotSpotNamer(mem, layout_)
        namer: HotSpotNamer = proc.namer  # type: ignore[assignment]
        if raw.aux & JVM_AUX_KIND_MASK == JVM_FRAME_COMPILED:
            blob = namer.stub_name(raw.id)
            if blob is None:
                return None
            if blob not in COMPILED_BLOBS:
                return namer.frames(raw.id, raw.addr, JVM_FRAME_STUB)
        return namer.frames(raw.id, raw.addr, raw.aux)

    def unknown(self) -> Frame:
        """`<java frame>`."""
        return UNKNOWN_JVM

    def process_gone(self, pid: int) -> None:
        """Forget a JVM (exit or exec)."""
        self._pending.pop(pid, None)
        self._layouts.pop(pid, None)
        super().process_gone(pid)
