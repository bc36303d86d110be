"""What the profiler core does for every interpreter walked in BPF beside CPython (PHP, Ruby): recognise
its engine in new mappings, tell BPF where its VM loop is (`interp_ranges`) and how to walk each process
(its per-pid map), and name its frames from process memory while processes live. A runtime subclasses
`RuntimeSupport` with its discovery, its BPF struct and its namer."""

from __future__ import annotations

import os
import struct
import threading
from typing import Generic, TypeVar

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.memory import ProcessMemory
from fleetprof.process.tracker import ExecMapping
from fleetprof.profile.model import Frame
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey, decode_frames

B = TypeVar("B")  # the runtime's description of one engine binary
FrameKey = tuple[int, int, int, int]  # pid, id, addr, aux


class Unsupported(Exception):
    """An engine fleetprof can't walk; the message is the one-line reason."""


class RuntimeProcess(Generic[B]):
    """One registered process: its engine, load bias and a reader of its memory (opened on first use)."""

    def __init__(self, pid: int, binary: B, bias: int) -> None:
        self.pid = pid
        self.binary = binary
        self.bias = bias
        self.mem: ProcessMemory | None = None
        self.namer: object = None  # the runtime's namer over `mem`, built on first use

    def memory(self) -> ProcessMemory | None:
        """The process's memory, None when it can't be opened (gone, or not ours to read)."""
        if self.mem is None and os.path.exists(f"/proc/{self.pid}"):
            try:
                self.mem = ProcessMemory(self.pid)
            except OSError:
                return None
        return self.mem

    def close(self) -> None:
        """Close the memory file (the process is gone, or exec'd another image)."""
        if self.mem is not None:
            self.mem.close()
            self.mem = None
            self.namer = None


class RuntimeSupport(Generic[B]):
    """Keeps a runtime's per-pid BPF map and `interp_ranges` in step with its processes; names frames."""

    name = ""  # "php", "ruby": stats keys
    frame_kind = 0  # layout.FRAME_*
    interp_kind = 0  # layout.INTERP_*

    def __init__(self, procs: Map, interp_ranges: Map) -> None:
        self._procs_map = procs
        self._ranges = interp_ranges
        self._lock = threading.Lock()
        self._files: dict[int, B] = {}
        self._procs: dict[int, RuntimeProcess[B]] = {}
        self.frames: dict[FrameKey, Frame] = {}
        self.unsupported: dict[int, str] = {}  # pid -> why its frames can't be walked
        self.named = 0
        self.unnamed = 0

    # ---- what a runtime provides ----------------------------------------------------------------------

    def is_candidate(self, path: str) -> bool:
        """Whether a mapped file's name is one the engine ships under (cheap; before any ELF reading)."""
        raise NotImplementedError

    def inspect(self, path: str, file_id: str) -> B | None:
        """The engine in the file, None when there is none; raises Unsupported with the reason."""
        raise NotImplementedError

    def vm_ranges(self, binary: B) -> list[tuple[int, int]]:
        """ELF [start, end) ranges of the VM loop whose native frames stand for the runtime's frames."""
        raise NotImplementedError

    def proc_info(self, binary: B, bias: int) -> bytes:
        """The BPF map value for a process running `binary` at `bias`; raises Unsupported."""
        raise NotImplementedError

    def process_info(self, pid: int, binary: B, bias: int) -> bytes | None:
        """The BPF map value for process `pid`; None while the process is not ready to be walked (a runtime
        whose layout lives in the process's memory retries later). Raises Unsupported."""
        return self.proc_info(binary, bias)

    def name_frame(self, proc: RuntimeProcess[B], raw: RawFrame) -> Frame | None:
        """The frame `raw` names in the live process, None when it can't be named."""
        raise NotImplementedError

    def unknown(self) -> Frame:
        """The frame shown for one that could not be named."""
        raise NotImplementedError

    def regroup(self, frames: bytes) -> bytes:
        """A stack's user frames with this runtime's frames where they belong, when BPF could not put them
        there itself (Perl); as they are for a runtime whose walker interleaves in the kernel."""
        return frames

    # ---- the core's interface -------------------------------------------------------------------------

    def interpreter_flags(self, pid: int, m: ExecMapping) -> int:
        """MAPPING_FLAG_INTERPRETER when `m` maps the engine (registering the process), else 0."""
        if not self.is_candidate(m.path):
            return 0
        try:
            binary = self.inspect(m.open_path or m.path, m.file_id)
            if binary is None:
                return 0
            info = self.process_info(pid, binary, m.bias)
        except Unsupported as exc:
            self.unsupported[pid] = str(exc)
            return 0
        if info is None:  # not set up yet (a VM starting): the runtime registers the process later
            return 0
        key = file_id_u64(m.file_id)
        if key not in self._files:
            self._register_file(key, binary)
        with self._lock:
            known = self._procs.get(pid)
            if known is None or known.binary is not binary or known.bias != m.bias:
                try:
                    self._procs_map.update(struct.pack("<I", pid), info)
                except BpfError as exc:
                    self.unsupported[pid] = f"{self.name}: per-process map full ({exc})"
                    return 0
                if known is not None:
                    known.close()
                self._procs[pid] = RuntimeProcess(pid, binary, m.bias)
        return layout.MAPPING_FLAG_INTERPRETER

    def _register_file(self, key: int, binary: B) -> None:
        value = layout.InterpRanges()
        value.kind = self.interp_kind
        for i, (start, end) in enumerate(self.vm_ranges(binary)[: layout.MAX_INTERP_RANGES]):
            value.start[i], value.end[i] = start, end
        self._ranges.update(struct.pack("<Q", key), bytes(value))
        self._files[key] = binary

    def in_vm_loop(self, key: int, elf_pc: int) -> bool:
        """Whether an ELF pc of a registered engine file lies in its VM loop (as `interp_ranges` says)."""
        binary = self._files.get(key)
        return binary is not None and any(lo <= elf_pc < hi for lo, hi in self.vm_ranges(binary))

    def file_flags(self, key: int) -> int:
        """MAPPING_FLAG_INTERPRETER when the file is a registered engine, else 0."""
        return layout.MAPPING_FLAG_INTERPRETER if key in self._files else 0

    def process_gone(self, pid: int) -> None:
        """Forget a process (exit or exec); its frames already named stay."""
        with self._lock:
            proc = self._procs.pop(pid, None)
            if proc is not None:
                proc.close()
                self._procs_map.delete(struct.pack("<I", pid))

    def forget(self, pids: set[int]) -> None:
        """Drop the named frames and notes of processes gone for good (the agent, between windows)."""
        self.frames = {k: f for k, f in self.frames.items() if k[0] not in pids}
        for pid in pids:
            self.unsupported.pop(pid, None)

    def on_new_stack(self, key: StackKey) -> None:
        """Name the runtime's frames of a stack seen for the first time, while the process still lives."""
        if key.pid not in self._procs:
            return
        for raw in decode_frames(key.frames[key.num_kernel * layout.FRAME_SIZE :]):
            if raw.kind == self.frame_kind:
                self.resolve(key.pid, raw)

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The named frame (named now if it was not seen live); `unknown()` when it can't be."""
        fkey = (pid, raw.id, raw.addr, raw.aux)
        frame = self.frames.get(fkey)
        if frame is not None:
            return frame
        proc = self._procs.get(pid)
        named = self.name_frame(proc, raw) if proc is not None and proc.memory() is not None else None
        if named is None:
            self.unnamed += 1
            return self.unknown()
        self.named += 1
        self.frames[fkey] = named
        return named

    def resolve_frames(self, pid: int, raw: RawFrame) -> tuple[Frame, ...]:
        """Every frame `raw` stands for, root first: one, unless the runtime inlines (V8)."""
        return (self.resolve(pid, raw),)

    def stats(self) -> dict[str, int]:
        """Processes registered and frames named or not."""
        return {
            f"{self.name}_processes": len(self._procs),
            f"{self.name}_named": self.named,
            f"{self.name}_unnamed": self.unnamed,
        }


class InliningRuntimeSupport(RuntimeSupport[B]):
    """A runtime whose one raw frame may stand for several (a JIT's code with the functions it inlined, V8
    and HotSpot): the frames of each raw frame are named once, root first, as a chain."""

    def __init__(self, procs: Map, interp_ranges: Map) -> None:
        super().__init__(procs, interp_ranges)
        self._chains: dict[FrameKey, tuple[Frame, ...]] = {}

    def name_frames(self, proc: RuntimeProcess[B], raw: RawFrame) -> tuple[Frame, ...] | None:
        """The frames `raw` stands for in the live process, root first; None when they can't be named."""
        raise NotImplementedError

    def name_frame(self, proc: RuntimeProcess[B], raw: RawFrame) -> Frame | None:
        """The outermost of the frames `name_frames` gives."""
        frames = self.name_frames(proc, raw)
        return frames[0] if frames else None

    def resolve(self, pid: int, raw: RawFrame) -> Frame:
        """The outermost frame of `resolve_frames`."""
        return self.resolve_frames(pid, raw)[0]

    def resolve_frames(self, pid: int, raw: RawFrame) -> tuple[Frame, ...]:
        """Every frame `raw` stands for (inlined functions after their caller), named once."""
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
