"""The agent's first stage: aggregated stacks -> a *raw* `Profile`, with nothing native symbolized.

Native frames keep their file (mapping with file id, build id, path) and ELF address (return addresses
already moved inside the call); kernel frames are named here (kallsyms is per host, KASLR), Python frames
too (their names live in process memory), JIT and anonymous code from perf maps and mapping labels. Each
sample carries its process's real executable and Kubernetes pod uid; the profile carries the host's OTel
resource. `fleetprof.symbolize.profile.symbolize_profile` is the second stage, on the host (`record`,
`top`, `agent --symbols local`) or on the server.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from fleetprof.agent.hostinfo import host_resource
from fleetprof.process.container import pod_uid_from_cgroup
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.tracker import ExecMapping, ProcessInfo
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.symbolize.kernel import KernelSymbols
from fleetprof.symbolize.modelframes import kernel_model_frame
from fleetprof.symbolize.native import NativeFile
from fleetprof.symbolize.perfmap import PerfMap, load_perf_map
from fleetprof.symbolize.profile import PYTHON_MARKER_PREFIX
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import RawFrame, StackKey

GoroutineLabels = Callable[[int, int, int], tuple[tuple[str, str], ...]]
PythonResolver = Callable[[int, RawFrame], "Frame | tuple[Frame, ...]"]
ThreadNamer = Callable[[int, int, str, str], str]  # (pid, tid, OS thread name, process name) -> label
KERNEL_MEMO_LIMIT = 1 << 16
_FRAME = layout.FRAME_STRUCT
_FRAME_SIZE = layout.FRAME_SIZE


class _Options(Protocol):
    frequency_hz: int


class RawCore(Protocol):
    """What the raw stage reads from a `ProfilerCore` (tests pass a fake)."""

    options: _Options
    own_pid: int
    started_ns: int
    stopped_ns: int
    files: dict[int, NativeFile]

    @property
    def aggregator(self) -> object:
        """The core's Aggregator (`.stacks`)."""

    def mapping_model(self, pid: int, file_key: int) -> Mapping | None:
        """The Mapping of a file key in a process."""

    def container_id(self, pid: int) -> str:
        """The container id of a process."""

    def anonymous_name(self, pid: int, addr: int) -> str:
        """The module name of code outside ELF files."""

    def stats(self) -> dict[str, int]:
        """Counters of the run."""


class _Tracker(Protocol):
    def process(self, pid: int) -> ProcessInfo | None:
        """What the tracker knows of a pid."""


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


class ProcessLabels:
    """Per-process labels the stack keys don't carry (executable path, pod uid), kept past the process's
    exit until the window holding its samples is built. Attach it as a tracker listener before scanning
    (`attach`); otherwise labels are read from the tracker and /proc at build time, which misses processes
    that are gone by then. Thread-safe: the tracker calls it under its own lock, builds come from another."""

    def __init__(self, tracker: _Tracker | None = None, proc_root: str = "/proc") -> None:
        self._tracker = tracker
        self._proc = proc_root
        self._lock = threading.Lock()
        self._labels: dict[int, tuple[str, str]] = {}  # pid -> (executable, pod uid)
        self._exited: dict[int, int] = {}  # pid -> window number when it exited
        self._read: dict[int, tuple[str, str]] = {}  # labels read at build time (processes never told of)
        self._window = 0

    @classmethod
    def attach(cls, core: object) -> ProcessLabels:
        """Labels fed by `core.tracker` from now on (call before `core.scan`)."""
        tracker = getattr(core, "tracker", None)
        labels = cls(tracker)
        if tracker is not None:
            tracker.add_listener(labels)
        return labels

    # ---- tracker listener --------------------------------------------------------------------------

    def mappings_added(self, pid: int, mappings: list[ExecMapping]) -> None:
        """A process appeared or exec'd: note its executable and pod uid."""
        info = self._tracker.process(pid) if self._tracker is not None else None
        exe = info.exe if info is not None else ""
        with self._lock:
            self._exited.pop(pid, None)
            known = self._labels.get(pid)
        pod = known[1] if known is not None else self._pod_uid(pid)
        with self._lock:
            self._labels[pid] = (exe or (known[0] if known else ""), pod)

    def mappings_removed(self, pid: int, mappings: list[ExecMapping]) -> None:
        """Nothing to do: the labels outlive the mappings."""

    def process_exited(self, pid: int) -> None:
        """Keep the labels for the window being collected, then drop them (`end_window`)."""
        with self._lock:
            if pid in self._labels:
                self._exited[pid] = self._window

    # ---- queries -----------------------------------------------------------------------------------

    def get(self, pid: int) -> tuple[str, str]:
        """(executable path, pod uid) of `pid`; "" for what is unknown."""
        with self._lock:
            found = self._labels.get(pid) or self._read.get(pid)
        if found is not None:
            return found
        info = self._tracker.process(pid) if self._tracker is not None else None
        exe = info.exe if info is not None else self._exe(pid)
        found = (exe, self._pod_uid(pid))
        with self._lock:
            self._read[pid] = found  # read at build time: cached for this window only
        return found

    def end_window(self) -> None:
        """A window was built: forget processes that exited before the previous one ended."""
        with self._lock:
            for pid, window in list(self._exited.items()):
                if window < self._window:
                    del self._exited[pid]
                    self._labels.pop(pid, None)
            self._read.clear()
            self._window += 1

    def __len__(self) -> int:
        return len(self._labels)

    def _exe(self, pid: int) -> str:
        try:
            return os.readlink(f"{self._proc}/{pid}/exe").removesuffix(" (deleted)")
        except OSError:
            return ""

    def _pod_uid(self, pid: int) -> str:
        return pod_uid_from_cgroup(_read_text(f"{self._proc}/{pid}/cgroup"))


_INTERPRETED = (
    layout.FRAME_PYTHON,
    layout.FRAME_PHP,
    layout.FRAME_RUBY,
    layout.FRAME_PERL,
    layout.FRAME_V8,
    layout.FRAME_JVM,
)


def _error_frame(code: int) -> Frame:
    return Frame(kind=FrameKind.ERROR, function=f"[unwind: {layout.UNWIND_ERROR_NAMES.get(code, str(code))}]")


def python_marker(why: str) -> Frame:
    """The error frame saying a process's CPython frames can't be walked (`why`)."""
    return Frame(kind=FrameKind.ERROR, function=f"{PYTHON_MARKER_PREFIX}{why}]")


class RawProfileBuilder:
    """Builds raw profiles of one ProfilerCore; reusable across windows (caches persist)."""

    def __init__(
        self,
        core: RawCore,
        kernel: KernelSymbols | None = None,
        python: PythonResolver | None = None,
        thread_names: ThreadNamer | None = None,
        python_problem: Callable[[int], str] | None = None,
        labels: ProcessLabels | None = None,
        resource: dict[str, str | int] | None = None,
        goroutine_labels: GoroutineLabels | None = None,
    ) -> None:
        self.core = core
        self.goroutine_labels = goroutine_labels  # (pid, label set, tag) -> a Go sample's pprof labels
        self.kernel = kernel or KernelSymbols.load()
        self.python = python
        self.thread_names = thread_names
        self.python_problem = python_problem  # pid -> why its CPython frames can't be walked, or ""
        self.labels = labels or ProcessLabels(getattr(core, "tracker", None))
        self.resource = dict(resource) if resource is not None else host_resource()
        self._kernel_memo: dict[int, Frame] = {}
        # The core's counters in each profile; the agent turns off (it puts per-window deltas there itself).
        self.with_stats = True
        self._perf_maps: dict[int, PerfMap | None] = {}

    def build(self, stacks: dict[StackKey, object] | None = None) -> Profile:
        """A raw Profile of `stacks` (default: everything the core's aggregator holds)."""
        core = self.core
        agg_stacks = core.aggregator.stacks if stacks is None else stacks  # type: ignore[attr-defined]
        # Memos for this window: the same frames (and whole user and kernel stacks) recur in many stacks.
        # Keys are the raw bytes or plain tuples of struct frame: no per-frame object is built for a hit.
        frame_memo: dict[tuple[int, tuple[int, ...]], Frame | tuple[Frame, ...]] = {}
        user_memo: dict[tuple[int, bytes], tuple[Frame, ...]] = {}
        kernel_memo: dict[bytes, tuple[Frame, ...]] = {}
        heads: dict[tuple[int, bytes, int], tuple[Frame, ...]] = {}
        per_pid: dict[int, tuple[str, str, str]] = {}  # pid -> (executable, pod uid, container id)
        threads: dict[tuple[int, int, bytes, bytes], str] = {}
        samples: list[Sample] = []
        for key, counts in agg_stacks.items():
            pid = key.pid
            if pid == core.own_pid:
                continue
            split = key.num_kernel * _FRAME_SIZE
            head = heads.get((pid, key.pcomm, key.error))
            if head is None:
                head = heads[(pid, key.pcomm, key.error)] = self._head(pid, key.pcomm, key.error)
            user_bytes = key.frames[split:]
            user = user_memo.get((pid, user_bytes))
            if user is None:
                user = user_memo[(pid, user_bytes)] = self._user_stack(pid, user_bytes, frame_memo)
            kernel_bytes = key.frames[:split]
            kernel = kernel_memo.get(kernel_bytes)
            if kernel is None:
                kernel = kernel_memo[kernel_bytes] = tuple(
                    self._kernel_frame(addr)
                    for _, addr, _, _, _, _ in reversed(list(_FRAME.iter_unpack(kernel_bytes)))
                )
            labels = per_pid.get(pid)
            if labels is None:
                labels = per_pid[pid] = (*self.labels.get(pid), core.container_id(pid))
            thread = threads.get((pid, key.tid, key.comm, key.pcomm))
            if thread is None:
                thread = threads[(pid, key.tid, key.comm, key.pcomm)] = self._thread_name(key)
            samples.append(
                Sample(
                    stack=head + user + kernel,
                    pid=pid,
                    tid=key.tid,
                    process_name=_name(key.pcomm),
                    thread_name=thread,
                    count=counts.count,  # type: ignore[attr-defined]
                    cpus=set(counts.cpus),  # type: ignore[attr-defined]
                    timestamps_ns=list(counts.timestamps_ns),  # type: ignore[attr-defined]
                    container_id=labels[2],
                    executable=labels[0],
                    pod_uid=labels[1],
                    custom_labels=self.goroutine_labels(pid, key.labels, key.labels_tag)
                    if key.labels and self.goroutine_labels is not None
                    else (),
                )
            )
        self.labels.end_window()
        self._perf_maps.clear()  # re-read per window: JIT code moves
        start = core.started_ns or 0
        end = core.stopped_ns or start
        return Profile(
            samples=samples,
            frequency_hz=core.options.frequency_hz,
            start_time_ns=start,
            duration_ns=max(end - start, 0),
            hostname=str(self.resource.get("host.name") or socket.gethostname()),
            kernel_release=str(self.resource.get("os.version", "")),
            stats=dict(core.stats()) if self.with_stats else {},
            resource=dict(self.resource),
        )

    def _head(self, pid: int, pcomm: bytes, error: int) -> tuple[Frame, ...]:
        """The root frames of a stack: its process, then its unwinding error and unwalkable-CPython marker."""
        head = [Frame(kind=FrameKind.PROCESS, function=_name(pcomm) or f"pid {pid}")]
        if error != layout.UNWIND_COMPLETE:
            head.append(_error_frame(error))
        unwalkable = self.python_problem(pid) if self.python_problem else ""
        if unwalkable:
            head.append(python_marker(unwalkable))
        other = getattr(self.core, "runtime_problem", None)  # PHP, Ruby: "[unwind: php: why]" or ""
        marker = other(pid) if other is not None else ""
        if marker:
            head.append(Frame(kind=FrameKind.ERROR, function=marker))
        return tuple(head)

    def _user_stack(
        self, pid: int, user_bytes: bytes, memo: dict[tuple[int, tuple[int, ...]], Frame | tuple[Frame, ...]]
    ) -> tuple[Frame, ...]:
        """The user frames of one stack, root first; a frame is decoded into a RawFrame only when `memo`
        (this window's, per pid) does not hold it yet."""
        out: list[Frame] = []
        regroup = getattr(self.core, "regroup_frames", None)  # Perl's frames, sent in one place by BPF
        if regroup is not None:
            user_bytes = regroup(user_bytes)
        for fields in reversed(list(_FRAME.iter_unpack(user_bytes))):
            frame = memo.get((pid, fields))
            if frame is None:
                frame = memo[(pid, fields)] = self._user_frame(pid, RawFrame._make(fields))
            if type(frame) is tuple:  # a frame standing for several (inlined JavaScript functions)
                out.extend(frame)
            else:
                out.append(frame)  # type: ignore[arg-type]
        return tuple(out)

    def _thread_name(self, key: StackKey) -> str:
        comm = _name(key.comm)
        return self.thread_names(key.pid, key.tid, comm, _name(key.pcomm)) if self.thread_names else comm

    def _user_frame(self, pid: int, raw: RawFrame) -> Frame | tuple[Frame, ...]:
        if raw.kind in _INTERPRETED:
            if self.python is not None:  # the core's resolver of every interpreted kind
                return self.python(pid, raw)
            return Frame(kind=FrameKind.PYTHON, function="<python frame>")
        if raw.kind == layout.FRAME_NATIVE_RAW:
            return self._placed_frame(pid, raw)
        if raw.kind != layout.FRAME_NATIVE:
            return Frame(kind=FrameKind.ERROR, function=f"[unknown frame kind {raw.kind}]")
        if raw.id == 0:
            return self._anonymous_frame(pid, raw.addr)
        return self._native_frame(self.core.mapping_model(pid, raw.id), lookup_address(raw))

    def _placed_frame(self, pid: int, raw: RawFrame) -> Frame:
        """A frame BPF could not place (no mapping known yet): place it with the tracker now."""
        lookup = getattr(self.core, "lookup_mapping", None)
        m: ExecMapping | None = lookup(pid, raw.addr) if lookup is not None else None
        if m is None or not m.file_id:
            return self._anonymous_frame(pid, raw.addr)
        elf = m.elf_address(raw.addr)
        addr = elf - 1 if raw.flags & layout.FRAME_FLAG_RETURN_ADDRESS else elf
        mapping = self.core.mapping_model(pid, file_id_u64(m.file_id)) or m.to_model()
        return self._native_frame(mapping, addr)

    @staticmethod
    def _native_frame(mapping: Mapping | None, addr: int) -> Frame:
        """The raw frame of an ELF address; a file the core never learned is named `[unknown]+0x…` now."""
        if mapping is None:
            return Frame(kind=FrameKind.NATIVE, function=f"[unknown]+0x{addr:x}", address=addr)
        return Frame(kind=FrameKind.NATIVE, function="", mapping=mapping, address=addr)

    def _anonymous_frame(self, pid: int, addr: int) -> Frame:
        module = self.core.anonymous_name(pid, addr)
        if pid not in self._perf_maps:
            self._perf_maps[pid] = load_perf_map(pid)
        perf_map = self._perf_maps[pid]
        name = perf_map.lookup(addr) if perf_map is not None else None
        name = name or f"{module}+0x{addr:x}"
        return Frame(kind=FrameKind.NATIVE, function=name, mapping=pseudo_mapping(module), address=addr)

    def _kernel_frame(self, addr: int) -> Frame:
        frame = self._kernel_memo.get(addr)
        if frame is None:
            if len(self._kernel_memo) >= KERNEL_MEMO_LIMIT:
                self._kernel_memo.clear()
            frame = self._kernel_memo[addr] = kernel_model_frame(self.kernel, addr)
        return frame


def pseudo_mapping(module: str) -> Mapping:
    """The mapping of code outside ELF files: `name [jit]`, `[unknown]+0x… [unknown]` in folded output."""
    return Mapping(file_id="", path=module.strip("[]"))


def lookup_address(raw: RawFrame) -> int:
    """The address to symbolize: inside the call instruction for return addresses."""
    return raw.addr - 1 if raw.flags & layout.FRAME_FLAG_RETURN_ADDRESS else raw.addr


def _name(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def raw_builder_for(
    core: RawCore, labels: ProcessLabels | None = None, resource: dict[str, str | int] | None = None
) -> RawProfileBuilder:
    """A raw builder wired to the core's runtime support (Python frames, thread names, unwalkable CPython)."""
    py = getattr(core, "python", None)
    return RawProfileBuilder(
        core,
        python=getattr(core, "resolve_interpreted", py.resolve if py is not None else None),
        thread_names=py.thread_name if py is not None else None,
        python_problem=py.unsupported.get if py is not None else None,
        labels=labels,
        resource=resource,
        goroutine_labels=getattr(core, "goroutine_labels", None),
    )
