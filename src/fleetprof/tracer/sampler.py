"""Load the sampler BPF object, attach it to a cpu-clock perf event per CPU and to the lifecycle tracepoints,
and hand its ring-buffer records to Python callbacks. Detaches cleanly on `close`."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fleetprof.bpf.libbpf import BpfError, BpfObject, Link, Map, RingBuffer
from fleetprof.bpf.perf_event import online_cpus, open_cpu_clock
from fleetprof.tracer import layout

OBJECT_NAME = "sampler.bpf.o"


class SamplerError(Exception):
    """The sampler could not be set up; the message is one line for the user."""


def object_path() -> Path:
    """Where `make setup` puts the compiled BPF object."""
    return Path(str(resources.files("fleetprof.tracer").joinpath("bpf", OBJECT_NAME)))


PROGRAMS = ("on_sample", "unwind_native", "on_fork", "on_exec", "on_exit")
SNAPSHOT_ROOM = 256 * (layout.MAX_SNAPSHOT_STACK + 256)


def possible_cpus() -> int:
    """How many CPU ids the kernel may hand out (/sys/devices/system/cpu/possible, e.g. "0-3")."""
    try:
        text = Path("/sys/devices/system/cpu/possible").read_text().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1
    except (OSError, ValueError):
        return os.cpu_count() or 1


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 1).bit_length()


@dataclass(slots=True)
class SamplerOptions:
    """Sizes and rates; defaults suit `record` on a small host."""

    frequency_hz: int = 99
    ringbuf_bytes: int = 0  # 0 = sized from frequency x CPUs
    unwind_rows: int = 1 << 21
    unwind_rules: int = 1 << 16
    pids: tuple[int, ...] | None = None  # None = whole host


class Sampler:
    """The loaded and attached sampler."""

    def __init__(self, options: SamplerOptions) -> None:
        self.options = options
        self.cpus = online_cpus()
        self._obj: BpfObject | None = None
        self._links: list[Link] = []
        self._rb = RingBuffer()
        self.ncpus_possible = os.cpu_count() or len(self.cpus)

    # ---- setup ------------------------------------------------------------------------------------

    def load(self) -> None:
        """Open, size and load the BPF object and wire the tail-call array."""
        path = object_path()
        if not path.is_file():
            raise SamplerError(f"BPF object {path} is missing: run `make setup` to build it")
        try:
            obj = BpfObject(str(path))
        except BpfError as exc:
            raise SamplerError(str(exc)) from None
        self._obj = obj
        opts = self.options
        # Samples (~2 KiB each at worst) plus room for bursts of stack snapshots (32 KiB each), which come
        # while the agent is busiest: new programs whose tables are still compiling.
        rb = opts.ringbuf_bytes or _next_pow2(
            max(opts.frequency_hz * len(self.cpus) * 2048, 1 << 20) + SNAPSHOT_ROOM
        )
        try:
            obj.resize_map("samples", _next_pow2(rb))
            obj.resize_map("unwind_rows", opts.unwind_rows)
            obj.resize_map("unwind_rules", opts.unwind_rules)
            obj.resize_map("snapshots", possible_cpus())
            obj.load()
        except BpfError as exc:
            detail = _verifier_summary(exc.log)
            raise SamplerError(f"loading the BPF sampler failed: {exc}{detail}") from None
        progs = obj.map("progs")
        progs.update(
            struct.pack("<I", layout.PROG_NATIVE), struct.pack("<I", obj.program("unwind_native").fd)
        )
        if self.options.pids is not None:
            self.set_filter(self.options.pids)

    def set_filter(self, pids: Iterable[int]) -> None:
        """Sample only these pids (and, from now on, the children they fork)."""
        flt = self.map("pid_filter")
        for pid in pids:
            flt.update(struct.pack("<I", pid), b"\x01")
        self.map("config").update(struct.pack("<I", 0), struct.pack("<II", layout.FILTER_PIDS, 0))

    def add_pid_to_filter(self, pid: int) -> None:
        """Include one more pid in the filter."""
        self.map("pid_filter").update(struct.pack("<I", pid), b"\x01")

    def attach(self) -> None:
        """Start sampling: perf events on every online CPU, then the lifecycle tracepoints."""
        obj = self._require()
        for name in ("on_fork", "on_exec", "on_exit"):
            try:
                self._links.append(obj.program(name).attach())
            except BpfError as exc:
                raise SamplerError(f"attaching {name} failed: {exc}") from None
        prog = obj.program("on_sample")
        for cpu in self.cpus:
            try:
                pfd = open_cpu_clock(cpu, self.options.frequency_hz)
            except OSError as exc:
                raise SamplerError(str(exc.strerror or exc)) from None
            try:
                self._links.append(prog.attach_perf_event(pfd))  # the link owns pfd from now on
            except BpfError as exc:
                os.close(pfd)
                raise SamplerError(f"attaching the sampler to CPU {cpu} failed: {exc}") from None

    def on_ring(self, name: str, fn: Callable[[int, int], None]) -> None:
        """Call `fn(address, size)` for each record of ring buffer `name`; rings are drained in the order
        they were added."""
        self._rb.add(self.map(name), fn)

    def on_samples(self, fn: Callable[[int, int], None]) -> None:
        """Call `fn(address, size)` for each sample record."""
        self._rb.add(self.map("samples"), fn)

    def on_events(self, fn: Callable[[int, int], None]) -> None:
        """Call `fn(address, size)` for each pid event."""
        self._rb.add(self.map("events"), fn)

    def poll(self, timeout_ms: int) -> int:
        """Wait up to `timeout_ms` for a wakeup (an event, or a filling sample ring), then drain every ring:
        samples don't wake the agent one by one."""
        n = self._rb.poll(timeout_ms)
        return n + self._rb.consume()

    def drain(self) -> int:
        """Consume what is already there."""
        return self._rb.consume()

    def map(self, name: str) -> Map:
        """A map of the loaded object."""
        return self._require().map(name)

    def stats(self) -> dict[str, int]:
        """Kernel-side counters summed over CPUs."""
        out: dict[str, int] = {}
        m = self.map("stats")
        for idx in range(layout.STAT_COUNT):
            name = _stat_name(idx)
            if name:  # only named counters are read (one syscall each)
                values = m.lookup_percpu(struct.pack("<I", idx), self.ncpus_possible)
                out[name] = sum(struct.unpack("<Q", v)[0] for v in values)
        return out

    def verified_insns(self) -> dict[str, int]:
        """Instructions the verifier walked per program: how far each is from the kernel's 1M budget."""
        obj = self._require()
        return {name: obj.program(name).verified_insns for name in PROGRAMS}

    def detach(self) -> None:
        """Stop sampling (perf events first, then tracepoints)."""
        for link in reversed(self._links):
            link.close()
        self._links.clear()

    def close(self) -> None:
        """Detach and unload everything."""
        self.detach()
        self._rb.close()
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def _require(self) -> BpfObject:
        if self._obj is None:
            raise SamplerError("sampler not loaded")
        return self._obj


def _stat_name(idx: int) -> str:
    """The name of stats slot `idx`, "" for an unused slot."""
    if idx in layout.STAT_NAMES:  # named slots above the error ranges (v8_frames, ...) come first
        return layout.STAT_NAMES[idx]
    if idx >= layout.STAT_PY_ERROR_BASE:
        name = layout.PY_ERROR_NAMES.get(idx - layout.STAT_PY_ERROR_BASE)
        return "python_error: " + name if name is not None else ""
    if idx >= layout.STAT_ERROR_BASE:
        name = layout.UNWIND_ERROR_NAMES.get(idx - layout.STAT_ERROR_BASE)
        return "unwind_error: " + name if name is not None else ""
    return layout.STAT_NAMES.get(idx, "")


def _verifier_summary(log: str) -> str:
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return " (libbpf: " + lines[-1].strip()[:200] + ")"
