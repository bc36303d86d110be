"""Turn aggregated raw stacks into a symbolized `Profile`: kernel frames from kallsyms, native frames by file
and ELF address (batched per file), Python frames from the interpreter symbolizer, and an error frame where
unwinding stopped early."""

from __future__ import annotations

import os
import platform
import socket
from collections import defaultdict
from collections.abc import Callable

from fleetprof.agent.core import ProfilerCore
from fleetprof.process.fileid import file_id_u64
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.symbolize.modelframes import kernel_model_frame, native_model_frames
from fleetprof.symbolize.native import NativeFile, NativeFrame, NativeSymbolizer
from fleetprof.symbolize.perfmap import PerfMap, load_perf_map
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey, decode_frames

PythonResolver = Callable[[int, RawFrame], Frame]
EVAL_LOOP_FUNCTIONS = frozenset({"_PyEval_EvalFrameDefault", "PyEval_EvalFrameEx", "_PyEval_EvalFrame"})
ThreadNamer = Callable[[int, int, str, str], str]  # (pid, tid, OS thread name, process name) -> label


def _error_frame(code: int) -> Frame:
    return Frame(kind=FrameKind.ERROR, function=f"[unwind: {layout.UNWIND_ERROR_NAMES.get(code, str(code))}]")


class ProfileBuilder:
    """Symbolizes the stacks of one ProfilerCore; reusable across windows (caches persist)."""

    def __init__(
        self,
        core: ProfilerCore,
        native: NativeSymbolizer | None = None,
        kernel: KernelSymbols | None = None,
        python: PythonResolver | None = None,
        thread_names: ThreadNamer | None = None,
        python_problem: Callable[[int], str] | None = None,
    ) -> None:
        self.core = core
        self.python_problem = python_problem  # pid -> why its CPython frames can't be walked, or ""
        self.native = native or NativeSymbolizer(cache_dir=core.options.cache_dir / "symbols")
        self.kernel = kernel or KernelSymbols.load()
        self.python = python
        self.thread_names = thread_names
        self._kernel_memo: dict[int, Frame] = {}
        self._perf_maps: dict[int, PerfMap | None] = {}

    def build(self, stacks: dict[StackKey, object] | None = None) -> Profile:
        """A Profile of `stacks` (default: everything the core's aggregator holds)."""
        core = self.core
        agg_stacks = core.aggregator.stacks if stacks is None else stacks
        decoded: dict[StackKey, list[RawFrame]] = {key: decode_frames(key.frames) for key in agg_stacks}
        native = self._symbolize_native(decoded)
        memo: dict[tuple[int, RawFrame], list[Frame]] = {}  # the same frame recurs in many stacks
        samples: list[Sample] = []
        for key, counts in agg_stacks.items():
            if key.pid == core.own_pid:
                continue
            frames = decoded[key]
            user = frames[key.num_kernel :]
            kern = frames[: key.num_kernel]
            stack: list[Frame] = [
                Frame(kind=FrameKind.PROCESS, function=_name(key.pcomm) or f"pid {key.pid}")
            ]
            if key.error != layout.UNWIND_COMPLETE:
                stack.append(_error_frame(key.error))
            for raw in reversed(user):
                converted = memo.get((key.pid, raw))
                if converted is None:
                    converted = memo[(key.pid, raw)] = self._user_frames(key.pid, raw, native)
                stack.extend(converted)
            unwalkable = self.python_problem(key.pid) if self.python_problem else ""
            if unwalkable:
                _mark_unwalked_python(stack, unwalkable)
            for raw in reversed(kern):
                stack.append(self._kernel_frame(raw.addr))
            samples.append(
                Sample(
                    stack=tuple(stack),
                    pid=key.pid,
                    tid=key.tid,
                    process_name=_name(key.pcomm),
                    thread_name=self._thread_name(key),
                    count=counts.count,  # type: ignore[attr-defined]
                    cpus=set(counts.cpus),  # type: ignore[attr-defined]
                    timestamps_ns=list(counts.timestamps_ns),  # type: ignore[attr-defined]
                    container_id=core.container_id(key.pid),
                )
            )
        start = core.started_ns or 0
        end = core.stopped_ns or start
        stats = dict(core.stats())
        return Profile(
            samples=samples,
            frequency_hz=core.options.frequency_hz,
            start_time_ns=start,
            duration_ns=max(end - start, 0),
            hostname=socket.gethostname(),
            kernel_release=platform.release(),
            stats=stats,
        )

    def _thread_name(self, key: StackKey) -> str:
        comm = _name(key.comm)
        return self.thread_names(key.pid, key.tid, comm, _name(key.pcomm)) if self.thread_names else comm

    # ---- native -----------------------------------------------------------------------------------

    def _symbolize_native(
        self, decoded: dict[StackKey, list[RawFrame]]
    ) -> dict[tuple[int, int], tuple[NativeFrame, ...]]:
        wanted: dict[int, set[int]] = defaultdict(set)
        for frames in decoded.values():
            for raw in frames:
                if raw.kind == layout.FRAME_NATIVE and raw.id:
                    wanted[raw.id].add(_lookup_addr(raw))
        out: dict[tuple[int, int], tuple[NativeFrame, ...]] = {}
        for file_key, addrs in wanted.items():
            file = self.core.files.get(file_key)
            if file is None:
                continue
            for addr, frames in self.native.symbolize(file, sorted(addrs)).items():
                out[(file_key, addr)] = frames
        return out

    def _user_frames(
        self, pid: int, raw: RawFrame, native: dict[tuple[int, int], tuple[NativeFrame, ...]]
    ) -> list[Frame]:
        if raw.kind == layout.FRAME_PYTHON:
            if self.python is not None:
                return [self.python(pid, raw)]
            return [Frame(kind=FrameKind.PYTHON, function="<python frame>")]
        if raw.kind == layout.FRAME_NATIVE_RAW:
            return self._raw_frames(pid, raw, native)
        if raw.kind != layout.FRAME_NATIVE:
            return [Frame(kind=FrameKind.ERROR, function=f"[unknown frame kind {raw.kind}]")]
        if raw.id == 0:
            return [self._anonymous_frame(pid, raw.addr)]
        addr = _lookup_addr(raw)
        mapping = self.core.mapping_model(pid, raw.id)
        frames = native.get((raw.id, addr))
        if frames is None:
            ref = self.core.files.get(raw.id)
            module = os.path.basename(ref.path) if ref else "[unknown]"
            return [
                Frame(kind=FrameKind.NATIVE, function=f"{module}+0x{addr:x}", mapping=mapping, address=addr)
            ]
        assert mapping is not None  # symbolized, so the file is known
        return list(native_model_frames(mapping, addr, frames))

    def _raw_frames(
        self, pid: int, raw: RawFrame, native: dict[tuple[int, int], tuple[NativeFrame, ...]]
    ) -> list[Frame]:
        """A frame BPF could not place (no mapping known yet): place it with the tracker now."""
        m = self.core.lookup_mapping(pid, raw.addr)
        if m is None or not m.file_id:
            return [self._anonymous_frame(pid, raw.addr)]
        key = file_id_u64(m.file_id)
        elf = m.elf_address(raw.addr)
        addr = elf - 1 if raw.flags & layout.FRAME_FLAG_RETURN_ADDRESS else elf
        if (key, addr) not in native:
            nf = NativeFile(file_id=m.file_id, path=m.path, open_path=m.open_path, build_id=m.build_id)
            native.update({(key, a): f for a, f in self.native.symbolize(nf, [addr]).items()})
        resolved = RawFrame(kind=layout.FRAME_NATIVE, id=key, addr=elf, aux=0, flags=raw.flags)
        return self._user_frames(pid, resolved, native)

    def _anonymous_frame(self, pid: int, addr: int) -> Frame:
        module = self.core.anonymous_name(pid, addr)
        if pid not in self._perf_maps:
            self._perf_maps[pid] = load_perf_map(pid)
        perf_map = self._perf_maps[pid]
        name = perf_map.lookup(addr) if perf_map is not None else None
        name = name or f"{module}+0x{addr:x}"
        return Frame(kind=FrameKind.NATIVE, function=name, mapping=_pseudo_mapping(module), address=addr)

    # ---- kernel -----------------------------------------------------------------------------------

    def _kernel_frame(self, addr: int) -> Frame:
        frame = self._kernel_memo.get(addr)
        if frame is None:
            frame = kernel_model_frame(self.kernel, addr)
            self._kernel_memo[addr] = frame
        return frame


def _mark_unwalked_python(stack: list[Frame], why: str) -> None:
    """Put an error frame where the Python frames of an unwalkable CPython would be: under its outermost
    eval-loop frame, so the native structure of the stack stays as it is."""
    for i, frame in enumerate(stack):
        if frame.kind is FrameKind.NATIVE and frame.function in EVAL_LOOP_FUNCTIONS:
            stack.insert(i + 1, Frame(kind=FrameKind.ERROR, function=f"[unwind: python: {why}]"))
            return


def _pseudo_mapping(module: str) -> Mapping:
    """The mapping of code outside ELF files: `name [jit]`, `[unknown]+0x… [unknown]` in folded output."""
    return Mapping(file_id="", path=module.strip("[]"))


def _lookup_addr(raw: RawFrame) -> int:
    """The address to symbolize: inside the call instruction for return addresses."""
    return raw.addr - 1 if raw.flags & layout.FRAME_FLAG_RETURN_ADDRESS else raw.addr


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def builder_for(core: ProfilerCore) -> ProfileBuilder:
    """A builder wired to the core's runtime support (Python frames, thread names, unwalkable CPython)."""
    py = core.python
    return ProfileBuilder(
        core,
        python=py.resolve if py is not None else None,
        thread_names=py.thread_name if py is not None else None,
        python_problem=py.unsupported.get if py is not None else None,
    )


def build_profile(core: ProfilerCore) -> Profile:
    """Symbolize everything the core has aggregated."""
    builder = builder_for(core)
    try:
        return builder.build()
    finally:
        builder.native.close()


__all__ = ["Mapping", "ProfileBuilder", "build_profile", "builder_for"]
