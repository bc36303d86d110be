"""`fleetprof agent`'s loop: continuous whole-host sampling cut into one batch per interval (its own start
time, duration and per-interval stats), built raw (native frames as file id + address) or symbolized on the
host, handed to the reporter, with the long-running upkeep in between (state of exited processes freed,
unmapped files unpinned, a periodic sweep for exits the ring buffer lost).

The thread that drains the ring buffers only cuts each window (a swap of the aggregator's table); a window
thread builds, encodes and spools it. Both read the core's process state, so event handling (rescans,
exits) and the upkeep wait while a window is built; the rings keep draining meanwhile."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fleetprof.agent.core import DEFAULT_UNWIND_ROWS, CoreOptions, ProfilerCore
from fleetprof.cachedir import default_cache_dir
from fleetprof.process.fileid import file_id_u64
from fleetprof.profile.model import Profile
from fleetprof.reporter.batch import encode_batch
from fleetprof.reporter.intervals import IntervalStats
from fleetprof.reporter.reporter import Reporter
from fleetprof.reporter.spool import SpoolError
from fleetprof.reporter.symbols import SymbolUploader
from fleetprof.tracer.aggregate import StackCounts, StackKey

log = logging.getLogger(__name__)
SYMBOL_MODES = ("upload", "local", "off")
FINAL_TABLE_WAIT_S = 2.0  # at shutdown, how long deferred samples may wait for their tables
FLUSH_TIMEOUT_S = 5.0
BUSY_RECORDS = 512  # records in one read that mean the rings fill fast (high frequency, many CPUs)
WINDOW_WAIT_S = 60.0  # at shutdown, how long the window thread may take for the windows it holds


@dataclass(frozen=True, slots=True)
class Window:
    """One interval cut on the draining thread: its stacks, realtime bounds and stats delta."""

    stacks: dict[StackKey, StackCounts]
    start_ns: int
    end_ns: int
    stats: dict[str, int]


@dataclass(slots=True)
class FleetOptions:
    """What `fleetprof agent` was asked for."""

    frequency_hz: int = 20
    interval_s: float = 5.0
    host_name: str | None = None
    symbols: str = "upload"
    unwind_rows: int = DEFAULT_UNWIND_ROWS
    sweep_s: float = 30.0  # how often tracked processes are checked for exits the ring buffer lost
    poll_s: float = 0.1  # the ring buffers are read at most this often (a wakeup in between waits)
    cache_dir: Path = field(default_factory=default_cache_dir)


class FleetAgent:
    """Owns a whole-host ProfilerCore and feeds the reporter one batch per interval."""

    def __init__(
        self,
        options: FleetOptions,
        reporter: Reporter,
        uploader: SymbolUploader | None = None,
        core: ProfilerCore | None = None,
    ) -> None:
        self.options = options
        self.reporter = reporter
        self.uploader = uploader if options.symbols == "upload" else None
        self.core = core or ProfilerCore(
            CoreOptions(
                frequency_hz=options.frequency_hz,
                pids=None,
                cache_dir=options.cache_dir,
                unwind_rows=options.unwind_rows,
                scan_on_exec=False,
            )
        )
        self.stats = IntervalStats()
        self.windows = 0
        self.batches_lost = 0  # batches the spool could not take (disk trouble), counted and logged
        self._build: Callable[[dict[StackKey, StackCounts]], Profile] | None = None
        self._close_build: Callable[[], None] = lambda: None
        self._window_start_ns = 0
        self._next_sweep = 0.0
        # Held while a window is built and while the draining thread changes process state.
        self._state_lock = threading.Lock()
        self._windows: queue.Queue[Window | None] = queue.Queue()
        self._window_thread: threading.Thread | None = None
        self._built = threading.Event()  # a window was built: the upkeep may free what it needed

    # ---- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Load BPF, learn every process, start sampling and the background senders."""
        from fleetprof.agent.hostinfo import host_resource
        from fleetprof.agent.raw import ProcessLabels, raw_builder_for

        core = self.core
        labels = ProcessLabels.attach(core)  # before the scan, so every process's labels are kept
        resource = host_resource(self.options.host_name)
        core.load()  # first: the builder is wired to the runtime support the load creates (CPython)
        raw = raw_builder_for(core, labels=labels, resource=resource)
        raw.with_stats = False  # each window carries its own stats delta (cut_window), not the totals
        self._build = raw.build
        if self.options.symbols == "local":
            self._build, self._close_build = _local_builder(core, raw.build)
        core.scan(None)
        core.start()
        self._window_start_ns = core.started_ns
        self._next_sweep = time.monotonic() + self.options.sweep_s
        self.reporter.start()
        if self.uploader is not None:
            self.uploader.start()
        self._window_thread = threading.Thread(target=self._window_work, name="fleetprof-window", daemon=True)
        self._window_thread.start()

    def run(self, stopped: Callable[[], bool]) -> None:
        """Sample until `stopped()`, handing one window per interval to the window thread; the last partial
        window is sent by `finish`."""
        while not stopped():
            deadline = time.monotonic() + self.options.interval_s
            while time.monotonic() < deadline and not stopped():
                self.poll()
                if self._built.is_set():
                    self._built.clear()
                    self.upkeep()
            if stopped():
                return
            self._windows.put(self.cut_window())

    def poll(self) -> None:
        """Drain the ring buffers, then, unless a window is being built, act on the events and finish
        deferred samples; at most once per `poll_s` (unless the rings fill fast), so a busy host's wakeups
        (exec and exit events) are handled in batches."""
        core = self.core
        began = time.monotonic()
        records = core.sampler.poll(int(self.options.poll_s * 1000))
        if self._state_lock.acquire(blocking=False):
            try:
                core.process_events()
                if core.deferred is not None and len(core.deferred):
                    core.deferred.resolve()
                if core.go is not None:
                    core.go.flush()  # the new stacks' goroutine label sets, while their processes live
            finally:
                self._state_lock.release()
        rest = self.options.poll_s - (time.monotonic() - began)
        if rest > 0 and records < BUSY_RECORDS:  # a ring filling fast is read again at once
            time.sleep(rest)

    def finish(self) -> None:
        """Stop sampling, put the last window into the spool, and give the collector a few seconds."""
        self._stop_window_thread()
        core = self.core
        core.stopped_ns = time.time_ns()
        core.sampler.detach()
        core.sampler.drain()
        core.process_events()
        core.finish_deferred(FINAL_TABLE_WAIT_S)
        self.emit_window()
        self.reporter.close(FLUSH_TIMEOUT_S)

    def close(self) -> None:
        """Release the core and the background threads (after `finish`, or after a failed start)."""
        self._stop_window_thread()
        if self.uploader is not None:
            self.uploader.close()
        self._close_build()
        self.core.close()

    def _stop_window_thread(self) -> None:
        """Let the window thread send what it holds, then end it."""
        thread, self._window_thread = self._window_thread, None
        if thread is not None:
            self._windows.put(None)
            thread.join(WINDOW_WAIT_S)

    def _window_work(self) -> None:
        """The window thread: build, encode and spool each window in order."""
        while (window := self._windows.get()) is not None:
            try:
                self.send_window(window)
            except Exception:  # a bug in one window's build must not stop the ones after it
                self.batches_lost += 1
                log.exception(
                    "building the window failed; its batch is lost (%d lost in all)", self.batches_lost
                )
            finally:
                self._built.set()

    # ---- one window -------------------------------------------------------------------------------

    def take_window(self) -> tuple[dict[StackKey, StackCounts], int, int]:
        """The stacks since the previous window, with the window's realtime start and end; the aggregator
        starts afresh (and its clock offset is refreshed: NTP steps and suspend move the realtime clock)."""
        stacks = self.core.aggregator.cut()
        start, end = self._window_start_ns, time.time_ns()
        self._window_start_ns = end
        return stacks, start, end

    def cut_window(self) -> Window:
        """End the current window on the draining thread: its stacks and stats, nothing built yet."""
        stacks, start, end = self.take_window()
        stats = self.stats.delta({**self.core.stats(), **self.core.upkeep_stats(), **self.reporter.stats()})
        self.windows += 1
        return Window(stacks, start, end, stats)

    def emit_window(self) -> Profile | None:
        """Cut the window, build its profile and spool it for the collector, all here; None when it had
        no samples."""
        return self.send_window(self.cut_window())

    def send_window(self, window: Window) -> Profile | None:
        """Build a cut window's profile (process state held still meanwhile), encode and spool it, and offer
        its files for symbol upload; None when it had no samples."""
        assert self._build is not None
        if not window.stacks:
            return None
        with self._state_lock:
            profile = self._build(window.stacks)
        profile.start_time_ns = window.start_ns
        profile.duration_ns = max(window.end_ns - window.start_ns, 0)
        profile.stats = window.stats
        if self.options.host_name:
            profile.hostname = self.options.host_name
        if not profile.samples:
            return None
        try:
            self.reporter.submit(encode_batch(profile))
        except SpoolError as exc:
            self.batches_lost += 1
            log.error("%s; this interval's batch is lost (%d lost in all)", exc, self.batches_lost)
        if self.uploader is not None:
            self._offer_symbols(profile)
        return profile

    def upkeep(self) -> None:
        """Between windows (once the window is built): free what exited processes and unmapped files held;
        now and then, sweep."""
        with self._state_lock:
            if time.monotonic() >= self._next_sweep:
                self._next_sweep = time.monotonic() + self.options.sweep_s
                swept = self.core.sweep()
                if swept:
                    log.debug("sweep: %d processes had exited without an exit event", swept)
            self.core.release_exited()

    def _offer_symbols(self, profile: Profile) -> None:
        """Tell the uploader about every native file the batch references."""
        assert self.uploader is not None
        seen: set[str] = set()
        for mapping in profile.mappings():
            fid = mapping.file_id
            if not fid or fid in seen:
                continue
            seen.add(fid)
            known = self.core.files.get(file_id_u64(fid))
            paths = (
                known.open_path if known is not None and known.file_id == fid else "",
                self.core.tracker.open_path(fid),
                mapping.path if mapping.path.startswith("/") else "",
            )
            self.uploader.offer(fid, paths, mapping.path)


def _local_builder(
    core: ProfilerCore, raw_build: Callable[[dict[StackKey, StackCounts]], Profile]
) -> tuple[Callable[[dict[StackKey, StackCounts]], Profile], Callable[[], None]]:
    """`--symbols local`: each raw window symbolized here, over the files this agent holds open."""
    from fleetprof.agent.build import host_lookup
    from fleetprof.symbolize.profile import symbolize_profile

    lookup = host_lookup(core)

    def build(stacks: dict[StackKey, StackCounts]) -> Profile:
        return symbolize_profile(raw_build(stacks), lookup)

    return build, lookup.close
