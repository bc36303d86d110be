"""The profile: the one data model every output format, the reporter, the wire codec and the store consume.

A `Profile` is a bag of `Sample`s; each sample is a stack of `Frame`s (root first, leaf last) plus the
labels DESIGN.md requires (pid, tid, process and thread names, CPU, timestamps, container id, executable,
pod uid). A raw profile (the agent's) still has native frames as file id + address; a symbolized one names
them (fleetprof.symbolize.profile turns the first into the second).
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field


class FrameKind(enum.IntEnum):
    """What produced a frame; decides how it is rendered and where it is symbolized."""

    NATIVE = 1  # user-space machine code, symbolized from the ELF file (file id + ELF address)
    KERNEL = 2  # kernel code, symbolized from /proc/kallsyms
    PYTHON = 3  # CPython frame, symbolized from process memory (qualname, file, line)
    ERROR = 4  # the unwinder stopped here; `function` says why (e.g. "[unwind: no mapping]")
    PROCESS = 5  # synthetic root frame: the process name
    INTERPRETED = 6  # another runtime's frame (JVM, V8, Ruby, ...) named by whoever sent it; see `runtime`


@dataclass(frozen=True, slots=True)
class Mapping:
    """An executable file mapped into a process, identified across hosts by `file_id`."""

    file_id: str  # 32 hex digits (128-bit), see fleetprof.process.fileid
    path: str  # path as seen by the process (from /proc/PID/maps), e.g. /usr/lib/x86_64-linux-gnu/libc.so.6
    build_id: str = ""  # GNU build id in hex, "" when the file has none
    start: int = 0  # runtime start address of the mapping, 0 when unknown
    limit: int = 0  # runtime end address (exclusive)
    offset: int = 0  # file offset of `start`

    @property
    def name(self) -> str:
        """Basename used in ` [module]` suffixes."""
        return self.path.rsplit("/", 1)[-1] or self.path


@dataclass(slots=True, unsafe_hash=True)
class Frame:
    """One symbolized frame. Inlined functions are separate frames with `inlined=True`.

    A value: hashed and shared between stacks, so never assigned to (use `dataclasses.replace`). Not
    `frozen=True` only because a frozen dataclass's constructor costs five times as much (3.6 vs 0.7 us
    here), and central symbolization builds one or more per new address.

    For NATIVE frames `address` is the ELF virtual address inside `mapping`'s file (what `nm` and
    `addr2line` print), already adjusted to point inside the call instruction for return addresses.
    A *raw* NATIVE frame (see `is_raw`) has `function == ""` and a mapping with a file id: it still has to
    be symbolized (fleetprof.symbolize.profile).
    """

    kind: FrameKind
    function: str  # demangled name; for unsymbolizable native frames "libfoo.so+0x1a2b"
    file: str = ""  # source file (Python file, or DWARF file for native)
    line: int = 0  # source line, 0 when unknown
    mapping: Mapping | None = None  # NATIVE frames only
    address: int = 0  # NATIVE: ELF vaddr; KERNEL: kernel address; PYTHON: 0
    inlined: bool = False  # NATIVE: produced by DWARF inline info (not a real call frame)
    start_line: int = 0  # first line of the function when known (DWARF or co_firstlineno)
    system_name: str = ""  # mangled name, when different from `function`
    runtime: str = ""  # OTel `profile.frame.type` when the kind alone doesn't say it (jvm, v8js, go, ...)

    @property
    def is_raw(self) -> bool:
        """An unsymbolized native frame: to be named from its mapping's file id and `address`."""
        return (
            self.kind is FrameKind.NATIVE
            and not self.function
            and self.mapping is not None
            and bool(self.mapping.file_id)
        )

    def folded_name(self) -> str:
        """Render per the folded contract: `name (file:line)`, `name [module]`, or `name_[k]`."""
        if self.kind is FrameKind.KERNEL:
            return f"{self.function}_[k]"
        if self.kind in (FrameKind.PYTHON, FrameKind.INTERPRETED):
            return f"{self.function} ({self.file}:{self.line})" if self.file else self.function
        if self.kind is FrameKind.NATIVE and self.mapping is not None:
            if not self.function:  # raw: what symbolization would fall back to
                return f"{self.mapping.name}+0x{self.address:x} [{self.mapping.name}]"
            return f"{self.function} [{self.mapping.name}]"
        return self.function


Stack = tuple[Frame, ...]  # root first, leaf last


@dataclass(slots=True)
class Sample:
    """Samples sharing a stack and labels, aggregated; `timestamps_ns` keeps each sample's time."""

    stack: Stack  # root first; the first frame is the PROCESS frame
    pid: int
    tid: int
    process_name: str
    thread_name: str
    count: int = 0
    cpus: set[int] = field(default_factory=set)
    timestamps_ns: list[int] = field(default_factory=list)  # CLOCK_REALTIME, one per sample
    container_id: str = ""
    executable: str = ""  # real executable path (/proc/PID/exe), "" when unknown; not the 15-char comm
    pod_uid: str = ""  # Kubernetes pod uid when the process's cgroup names one
    custom_labels: tuple[tuple[str, str], ...] = ()  # the program's own labels (Go pprof labels), by key


@dataclass(slots=True)
class Profile:
    """A profile over one time window on one host: symbolized, or *raw* (native frames still file id +
    address, see `Frame.is_raw`), as the agent ships it."""

    samples: list[Sample]
    frequency_hz: int
    start_time_ns: int  # CLOCK_REALTIME of the first sampling moment
    duration_ns: int
    hostname: str = ""
    kernel_release: str = ""
    # Counters worth surfacing (lost samples, unwind errors by reason, ...): name -> value.
    stats: dict[str, int] = field(default_factory=dict)
    # OTel resource attributes of the host: host.name, host.id, os.*, host.arch, host.cpu.*, agent version.
    resource: dict[str, str | int] = field(default_factory=dict)

    @property
    def period_ns(self) -> int:
        """Nanoseconds of CPU time one sample stands for."""
        return 1_000_000_000 // max(self.frequency_hz, 1)

    @property
    def total(self) -> int:
        """Total number of samples."""
        return sum(s.count for s in self.samples)

    def mappings(self) -> Iterator[Mapping]:
        """Every distinct mapping referenced by a native frame, in first-seen order."""
        seen: set[Mapping] = set()
        for sample in self.samples:
            for frame in sample.stack:
                if frame.mapping is not None and frame.mapping not in seen:
                    seen.add(frame.mapping)
                    yield frame.mapping
