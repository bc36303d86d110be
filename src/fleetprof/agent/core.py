"""The profiler core shared by `record`, `top` and the agent: the loaded sampler, the process tracker kept in
step with the kernel's mapping and unwind-table maps, and the sample aggregator."""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fleetprof.agent.deferred import DeferredStacks
from fleetprof.agent.execwindow import ExecWindow
from fleetprof.agent.golabels import GoLabelSupport
from fleetprof.agent.hotspot import HotSpotSupport
from fleetprof.agent.perl import PerlSupport
from fleetprof.agent.php import PhpSupport
from fleetprof.agent.prewarm import file_identity
from fleetprof.agent.python import PythonSupport
from fleetprof.agent.ruby import RubySupport
from fleetprof.agent.runtime import RuntimeSupport
from fleetprof.agent.tables import TableManager, TableRequest, malloc_trim
from fleetprof.agent.v8 import V8Support
from fleetprof.cachedir import default_cache_dir
from fleetprof.nativeunwind.cache import UnwindTableCache
from fleetprof.nativeunwind.loader import TableLoader
from fleetprof.process.fileid import file_id_u64
from fleetprof.process.files import FileStatus
from fleetprof.process.tracker import ExecMapping, ProcessTracker
from fleetprof.profile.model import Frame, FrameKind, Mapping
from fleetprof.symbolize.native import NativeFile
from fleetprof.tracer import layout
from fleetprof.tracer.aggregate import SEEN_S, Aggregator, RawFrame, StackKey, decode_frames
from fleetprof.tracer.mapsync import InodeMap, MappingsMap, MappingValue
from fleetprof.tracer.sampler import Sampler, SamplerOptions

log = logging.getLogger(__name__)
FRAME_IDS = layout.FRAME_STRUCT
FOLLOWUP_S = (0.003, 0.03)  # rescans after a new image appears: the loader maps its libraries meanwhile
PY_RESCAN_S = 0.005  # rescans of a process whose Python frames wait for its interpreter's registration
PY_RESCAN_TRIES = 20
DEFAULT_UNWIND_ROWS = 1 << 22  # 32 MiB of kernel memory; a busy build host needs ~2M rows
TABLE_WAIT_S = 60.0  # at the end, how long to wait for tables that deferred samples still need
TRIM_EVERY_S = 60.0
LABELLED_FRAMES_LIMIT = 1 << 15  # Go stacks remembered without their label set (see _on_new_stack)
INODE_SOFT_LIMIT = 48 << 10  # file_inodes holds 64 Ki: past this, inodes of unmapped files go, oldest first


@dataclass(slots=True)
class CoreOptions:
    """What to sample and how."""

    frequency_hz: int = 99
    pids: tuple[int, ...] | None = None  # None: whole host
    cache_dir: Path = field(default_factory=default_cache_dir)
    keep_timestamps: bool = True
    follow_new_processes: bool = False  # rescan new processes once more shortly after they appear
    # Read a process's new image at exec; False (the agent): when it is first sampled instead (BPF reports
    # the pid once its exec cleared the known mark), as most short-lived processes never are.
    scan_on_exec: bool = True
    unwind_rows: int = DEFAULT_UNWIND_ROWS


class ProfilerCore:
    """Owns the BPF sampler and everything that keeps it fed with process knowledge."""

    def __init__(self, options: CoreOptions) -> None:
        self.options = options
        self.sampler = Sampler(
            SamplerOptions(
                frequency_hz=options.frequency_hz, pids=options.pids, unwind_rows=options.unwind_rows
            )
        )
        self.aggregator = Aggregator(keep_timestamps=options.keep_timestamps)
        self.tracker = ProcessTracker(cache_dir=str(options.cache_dir))
        self.tracker.add_listener(self)
        self.files: dict[int, NativeFile] = {}  # 64-bit BPF file key -> how to read and name the file
        # Every mapping a pid had (files and anonymous code) and its Mapping per file: kept after the
        # process is gone, because the profile is symbolized at the end.
        self._history: dict[int, list[ExecMapping]] = {}
        self._models: dict[tuple[int, int], Mapping] = {}
        self._containers: dict[int, str] = {}
        self.started_ns = 0
        self.stopped_ns = 0
        self._mapsync: MappingsMap | None = None
        self._inodes: InodeMap | None = None
        self.deferred: DeferredStacks | None = None
        self._exec_window: ExecWindow | None = None
        self.python: PythonSupport | None = None
        self.runtimes: list[RuntimeSupport] = []  # interpreters walked in BPF beside CPython
        self.go: GoLabelSupport | None = None  # Go processes' goroutine labels
        self._labelled_frames: set[int] = set()  # hashes of labelled stacks' keys without their label set
        self._labelled_until = 0.0
        self._tables: TableManager | None = None
        self._events: list[tuple[int, int, int]] = []
        self._quiet_until: dict[int, tuple[float, float]] = {}
        self._followups: dict[int, tuple[float, int]] = {}  # pid -> (when to rescan it again, stage)
        self._followed: set[int] = set()
        self._py_rescans: dict[int, tuple[float, int]] = {}
        self._asked_rescans: set[int] = set()  # pids deferred samples need read again
        self._pinned: set[str] = set()
        self._mtimes: dict[int, int] = {}  # file key -> mtime_ns of the file (part of its inode identity)
        self.own_pid = os.getpid()
        # Long-running upkeep (release_exited): what was already gone at the previous call.
        self._dead_before: set[int] = set()
        self._unmapped_before: set[str] = set()
        self._unpinned: dict[int, None] = {}  # file keys unpinned, oldest first (their inodes may go)
        self._next_trim = 0.0  # release_exited: when to hand freed heap back to the kernel next

    # ---- lifecycle --------------------------------------------------------------------------------

    def load(self) -> None:
        """Load BPF and the maps' userspace owners (no sampling yet)."""
        self.sampler.load()
        self._mapsync = MappingsMap(self.sampler.map("mappings"), self.sampler.map("known_pids"))
        loader = TableLoader(
            self.sampler.map("unwind_rows"), self.sampler.map("unwind_rules"), self.sampler.map("file_tables")
        )
        self.options.cache_dir.mkdir(parents=True, exist_ok=True)
        self._tables = TableManager(loader, UnwindTableCache(self.options.cache_dir / "unwind"))
        self.python = PythonSupport(
            self.sampler.map("py_procs"),
            self.sampler.map("interp_ranges"),
            self.options.cache_dir / "python",
            self.sampler.map("py_files"),
        )
        ranges = self.sampler.map("interp_ranges")
        self.runtimes = [
            PhpSupport(self.sampler.map("php_procs"), ranges),
            RubySupport(self.sampler.map("ruby_procs"), ranges),
            PerlSupport(self.sampler.map("perl_procs"), ranges),
            V8Support(self.sampler.map("v8_procs"), ranges),
            HotSpotSupport(self.sampler.map("hotspot_procs"), ranges),
        ]
        self.go = GoLabelSupport(self.sampler.map("go_procs"))
        self._inodes = InodeMap(self.sampler.map("file_inodes"))
        self.deferred = DeferredStacks(
            emit=self.aggregator.add_bytes,
            mapping=self._mapping_for_replay,
            inode=self._inodes.lookup,
            rules=self._tables.find_rule,
            want_table=self._tables.ensure_loaded,
            pid_ready=self._pid_ready,
            want_rescan=self._asked_rescans.add,
            eval_loop=self._in_vm_loop,
        )
        self.aggregator.on_deferred = self._on_deferred
        self.aggregator.fix_failed = self._fix_failed
        self.aggregator.on_new_stack = self._on_new_stack
        # Code records first: a sample's records are written before it, and must be stored before it is read.
        self.sampler.on_ring("py_codes", self.python.on_code_record)
        self.sampler.on_samples(self.aggregator.add_record)
        self.sampler.on_events(self._on_event)

    def scan(self, pids: Sequence[int] | None = None) -> None:
        """Learn the mappings of `pids` (or of every process) before sampling starts."""
        if pids is None:
            self.tracker.scan_all()
            if self._mapsync is not None:
                for pid in self._history:
                    self._mapsync.mark_known(pid)
        else:
            for pid in pids:
                self._rescan_pid(pid)

    def start(self) -> None:
        """Attach: sampling begins."""
        self.started_ns = time.time_ns()
        self.sampler.attach()

    def poll(self, timeout_ms: int = 25) -> None:
        """Consume samples and events; rescan processes the kernel asked about."""
        if self._followups:
            wait = min(due for due, _ in self._followups.values()) - time.monotonic()
            timeout_ms = max(0, min(timeout_ms, int(wait * 1000)))
        self.sampler.poll(timeout_ms)
        self.process_events()
        if self.deferred is not None and len(self.deferred):
            self.deferred.resolve()
        if self.go is not None:
            self.go.flush()  # the new stacks' goroutine label sets, read together

    def stop(self) -> None:
        """Detach and drain what is left in the ring buffers."""
        self.stopped_ns = time.time_ns()
        self.sampler.detach()
        self.sampler.drain()
        self.process_events()
        self.finish_deferred()
        if self.go is not None:
            self.go.flush()

    def finish_deferred(self, timeout: float = TABLE_WAIT_S) -> None:
        """Finish the deferred samples: wait (bounded) for the tables they need, then count them all."""
        if self.deferred is None or self._tables is None:
            return
        deadline = time.monotonic() + timeout
        while len(self.deferred) and time.monotonic() < deadline:
            before = len(self.deferred)
            self.process_events()  # rescans deferred samples asked for
            self.deferred.resolve()  # asks for the tables it still misses
            idle = self._tables.wait_idle(max(0.0, min(1.0, deadline - time.monotonic())))
            if idle and len(self.deferred) == before:
                self.deferred.resolve()
                break  # nothing is loading that could finish the rest
        self.deferred.resolve(final=True)

    def close(self) -> None:
        """Release everything (tables, maps, files)."""
        if self._tables is not None:
            self._tables.close()
        for fid in self._pinned:
            self.tracker.unpin(fid)
        self._pinned.clear()
        self.tracker.close()
        self.sampler.close()

    def prewarm(self, paths: Sequence[str]) -> None:
        """Load the unwind tables of files a process is about to map (held until `close`)."""
        assert self._tables is not None
        self.tracker.warm(paths)
        for path in paths:
            ident = file_identity(path)
            if ident is None:
                continue
            fid, build_id = ident
            key = file_id_u64(fid)
            self.files.setdefault(key, NativeFile(file_id=fid, path=path, build_id=build_id))
            self._tables.acquire(TableRequest(key, fid, path, path))
            if self.python is not None:
                self.python.prewarm(path, fid)

    def wait_tables(self, timeout: float) -> bool:
        """Wait for queued unwind-table compilations."""
        return self._tables.wait_idle(timeout) if self._tables else True

    # ---- events -----------------------------------------------------------------------------------

    def _on_event(self, address: int, size: int) -> None:
        """Ring-buffer callback: only queue (rescans can be slow and must not stall sample consumption)."""
        self._events.append(layout.EVENT_STRUCT.unpack(ctypes.string_at(address, layout.EVENT_STRUCT.size)))

    def process_events(self) -> None:
        """Act on the events since the last call: forget exited processes, rescan the ones asked about."""
        events, self._events = self._events, []
        rescan: dict[int, list[int]] = {}
        if self.python is not None and self.python.waiting:
            # Python frames of processes not registered yet: read their maps now, name the frames while
            # the process still lives.
            now = time.monotonic()
            for pid in self.python.waiting_pids():
                last, tries = self._py_rescans.get(pid, (0.0, 0))
                if tries >= PY_RESCAN_TRIES:
                    self.python.stop_waiting(pid)  # an interpreter that can't be registered (unsupported)
                elif now - last >= PY_RESCAN_S:
                    self._py_rescans[pid] = (now, tries + 1)
                    self._rescan_pid(pid)  # its interpreter may have been mapped since the last scan
            self.python.retry_waiting()
        for etype, pid, addr in events:
            if etype == layout.EVENT_NEW_PID:
                rescan.setdefault(pid, [])
            elif etype == layout.EVENT_UNKNOWN_PC:
                if time.monotonic() >= self._quiet_until.get(pid, (0.0, 0.0))[0]:
                    rescan.setdefault(pid, []).append(addr)
            elif etype == layout.EVENT_EXEC:
                self._quiet_until.pop(pid, None)
                rescan[pid] = []  # pcs reported before the exec belong to the old image
                if self.python is not None:
                    self.python.process_gone(pid)
                for runtime in self.runtimes:
                    runtime.process_gone(pid)
                if self.go is not None:
                    self.go.process_gone(pid)
                if not self.options.scan_on_exec:
                    del rescan[pid]  # a NEW_PID event after this one asks again
                    self.tracker.on_exit(pid)  # the old image's mappings go now
                    continue
                self.tracker.on_exec(pid)
                self._resync_python(pid)
                rescan.setdefault(pid, [])
            elif etype == layout.EVENT_EXIT:
                rescan.pop(pid, None)
                self._py_rescans.pop(pid, None)
                self._quiet_until.pop(pid, None)
                # Mappings and tables go now; the files stay open (pinned) for symbolization.
                self.tracker.on_exit(pid)
                if self._mapsync is not None:
                    self._mapsync.remove_pid(pid)  # also when never tracked: its known_pids mark
        for pid in self._asked_rescans:
            rescan.setdefault(pid, [])
        self._asked_rescans.clear()
        now = time.monotonic()
        for pid, (due, stage) in list(self._followups.items()):
            if due <= now:
                del self._followups[pid]
                rescan.setdefault(pid, [])
                if stage + 1 < len(FOLLOWUP_S):
                    self._followups[pid] = (now + FOLLOWUP_S[stage + 1] - FOLLOWUP_S[stage], stage + 1)
        for pid, addrs in rescan.items():
            self._rescan_pid(pid, addrs)
        if self.options.follow_new_processes:
            # The dynamic loader maps a new image's libraries right after exec: look again shortly, so
            # samples in them don't wait for an unknown-pc event and its rescan.
            for etype, pid, _ in events:
                new_image = etype == layout.EVENT_EXEC or (
                    etype == layout.EVENT_NEW_PID and pid not in self._followed
                )
                if new_image and pid in rescan:
                    self._followed.add(pid)
                    self._followups[pid] = (now + FOLLOWUP_S[0], 0)

    def _rescan_pid(self, pid: int, unknown_pcs: Sequence[int] = ()) -> None:
        if pid == self.own_pid:
            return
        if unknown_pcs and all(self.tracker.lookup(pid, a) is not None for a in unknown_pcs):
            return  # already known (the event raced with an earlier rescan)
        if self._mapsync is not None:
            # Before reading the maps: an exec in between clears the mark in BPF, which then keeps
            # resolving mappings through the kernel's vmas rather than trusting the stale ones.
            self._mapsync.mark_known(pid)
        diff = self.tracker.rescan(pid)
        if diff is None:
            if self._mapsync is not None and self.tracker.process(pid) is None:
                self._mapsync.remove_pid(pid)  # gone before it was read: no known_pids mark left behind
            return
        if any(self.tracker.lookup(pid, a) is None for a in unknown_pcs):
            # A pc no mapping explains (a stale or garbage return address): back off, 0.1 s doubling to 30 s.
            _, backoff = self._quiet_until.get(pid, (0.0, 0.05))
            backoff = min(backoff * 2, 30.0)
            self._quiet_until[pid] = (time.monotonic() + backoff, backoff)
        else:
            self._quiet_until.pop(pid, None)

    def _resync_python(self, pid: int) -> None:
        """Register CPython again from the current mappings: an earlier rescan may already have seen the
        new image, so the exec's own diff adds nothing that would."""
        info = self.tracker.process(pid)
        if info is None or self.python is None:
            return
        for m in info.mappings:
            if m.file_id and m.status is FileStatus.OK:
                self.python.interpreter_flags(pid, m)

    # ---- tracker listener ---------------------------------------------------------------------------

    def mappings_added(self, pid: int, mappings: list[ExecMapping]) -> None:
        """Push new mappings into BPF and request their files' unwind tables."""
        assert self._mapsync is not None and self._tables is not None
        if pid not in self._containers:
            info = self.tracker.process(pid)
            self._containers[pid] = info.container_id if info else ""
        self._history.setdefault(pid, []).extend(mappings)
        for m in mappings:
            if not m.file_id or m.status is not FileStatus.OK:
                # Anonymous code (JIT), an unreadable or non-ELF file: walked with frame pointers.
                self._mapsync.add(pid, m.start, m.end, MappingValue(0, 0, layout.MAPPING_FLAG_FRAME_POINTERS))
                continue
            key = file_id_u64(m.file_id)
            self.files.setdefault(key, NativeFile(m.file_id, m.path, m.open_path, m.build_id))
            self._models.setdefault((pid, key), m.to_model())
            if m.file_id not in self._pinned:
                self.tracker.pin(m.file_id)  # readable for symbolization after the process is gone
                self._pinned.add(m.file_id)
                self._unpinned.pop(key, None)
            flags = layout.MAPPING_FLAG_HAS_TABLE
            if self.python is not None:
                flags |= self.python.interpreter_flags(pid, m)
            for runtime in self.runtimes:
                flags |= runtime.interpreter_flags(pid, m)
            if self.go is not None:
                self.go.interpreter_flags(pid, m)
            self._mapsync.add(pid, m.start, m.end, MappingValue(key, m.bias, flags))
            self._tables.acquire(TableRequest(key, m.file_id, m.open_path, m.path))
            self._register_inode(m, key, flags)

    def _register_inode(self, m: ExecMapping, key: int, flags: int) -> None:
        """Let BPF find this file by inode in processes whose maps it has not read yet."""
        if self._inodes is None or not m.inode:
            return
        mtime = self._mtimes.get(key)
        if mtime is None:
            try:
                mtime = self._mtimes[key] = os.stat(m.open_path or m.path).st_mtime_ns
            except OSError:
                return
        file_flags = flags & ~layout.MAPPING_FLAG_INTERPRETER
        if self.python is not None:
            file_flags |= self.python.file_flags(key)
        for runtime in self.runtimes:
            file_flags |= runtime.file_flags(key)
        self._inodes.add(m.dev, m.inode, mtime, key, m.start - m.offset - m.bias, file_flags)

    def _on_deferred(self, data: bytes, flags: int) -> None:
        """A deferred sample or its snapshot: the PHP and Ruby frames walked after the deferral are named
        now, while the process lives (the sample is counted only once its table is loaded, perhaps after
        the process exited; CPython's frames travel with their code records instead)."""
        assert self.deferred is not None
        if not flags & layout.SAMPLE_FLAG_SNAPSHOT and self.runtimes:
            header = layout.HEADER_STRUCT.unpack_from(data)
            pid, nk = header[1], header[4]
            kinds = {runtime.frame_kind: runtime for runtime in self.runtimes}
            for raw in decode_frames(data[layout.HEADER_SIZE + nk * layout.FRAME_SIZE :]):
                runtime = kinds.get(raw.kind)
                if runtime is not None:
                    runtime.resolve(pid, raw)
        self.deferred.add(data, flags)

    def _on_new_stack(self, key: StackKey) -> None:
        """A stack seen for the first time: mark its files used (table eviction is LRU), and let the Python
        support name its frames while the process lives. A Go stack new only by its label set (a program
        setting labels per request makes every sample one) just has the set read."""
        assert self._tables is not None and self.python is not None
        if key.labels and self.go is not None:
            self.go.on_new_stack(key)
            frames_only = hash(key._replace(labels=0, labels_tag=0))
            if frames_only in self._labelled_frames:
                return
            if (
                len(self._labelled_frames) >= LABELLED_FRAMES_LIMIT
                or time.monotonic() >= self._labelled_until
            ):
                self._labelled_frames.clear()  # as the aggregator's seen stacks: tables touched once a while
                self._labelled_until = time.monotonic() + SEEN_S
            self._labelled_frames.add(frames_only)
        for fid, _, _, kind, _, _ in FRAME_IDS.iter_unpack(key.frames[key.num_kernel * layout.FRAME_SIZE :]):
            if kind == layout.FRAME_NATIVE and fid:
                self._tables.touch(fid)
        self.python.on_new_stack(key)
        for runtime in self.runtimes:
            runtime.on_new_stack(key)

    def _mapping_for_replay(self, pid: int, pc: int) -> tuple[int, int, int] | None:
        """(file key, bias, flags) of the mapping holding `pc` for the userspace unwinder."""
        m = self.lookup_mapping(pid, pc)
        if m is None:
            parent = self.sampler.map("forked_from").lookup(struct.pack("<I", pid))
            if parent is not None:  # a forked child that never exec'd: its parent's mappings
                m = self.lookup_mapping(struct.unpack("<I", parent)[0], pc)
        if m is None:
            return self._vma_cache_lookup(pid, pc)
        if not m.file_id or m.status is not FileStatus.OK:
            return 0, 0, layout.MAPPING_FLAG_FRAME_POINTERS
        return file_id_u64(m.file_id), m.bias, layout.MAPPING_FLAG_HAS_TABLE

    def _fix_failed(self, data: bytes) -> bytes | None:
        """Kernel-only records for samples taken inside execve (the exec window is read on first use)."""
        if self._exec_window is None:
            self._exec_window = ExecWindow.from_kernel()
        return self._exec_window.rewrite(data)

    def _vma_cache_lookup(self, pid: int, pc: int) -> tuple[int, int, int] | None:
        """The mapping BPF itself resolved for `pid` (a process that exited before its maps were read)."""
        raw = self.sampler.map("vma_cache").lookup(struct.pack("<I", pid))
        if raw is None:
            return None
        cache = layout.VmaCache.from_buffer_copy(raw)
        for e in cache.e:
            if e.start <= pc < e.end and self._inodes is not None:
                known = self._inodes.lookup(e.dev, e.ino, e.mtime_ns)
                if known is None:
                    return None
                key, seg_delta, flags = known
                return key, e.start - (e.pgoff << 12) - seg_delta, flags
        return None

    def _pid_ready(self, pid: int) -> bool:
        """Whether the maps of `pid` are read (or can no longer be): deferred samples wait for that."""
        scanned = pid in self._history or self.tracker.process(pid) is not None
        return scanned or not os.path.exists(f"/proc/{pid}")

    def mappings_removed(self, pid: int, mappings: list[ExecMapping]) -> None:
        """Drop gone mappings from BPF and release their tables."""
        assert self._mapsync is not None and self._tables is not None
        for m in mappings:
            self._mapsync.remove(pid, m.start, m.end)
            if m.file_id and m.status is FileStatus.OK:
                self._tables.release(file_id_u64(m.file_id))

    def process_exited(self, pid: int) -> None:
        """The tracker dropped a process."""
        if self._mapsync is not None:
            self._mapsync.remove_pid(pid)
        if self.python is not None:
            self.python.process_gone(pid)
            self.python.symbolizer.forget(pid)
        for runtime in self.runtimes:
            runtime.process_gone(pid)
        if self.go is not None:
            self.go.process_gone(pid)

    # ---- long-running upkeep (the agent) ------------------------------------------------------------

    def sweep(self) -> int:
        """Forget tracked processes that exited without their exit event reaching us (a full ring buffer);
        returns how many."""
        return len(self.tracker.sweep())

    def release_exited(self) -> None:
        """Between windows: free what processes gone since before the previous call held (mapping history,
        models, Python frames), unpin files no live process has mapped since then, and keep file_inodes
        under its bound. The grace of one call keeps late (deferred) samples nameable."""
        live = set(self.tracker.pids())
        dead = {pid for pid in self._history if pid not in live}
        freed, self._dead_before = dead & self._dead_before, dead - self._dead_before
        if freed:
            for pid in freed:
                self._history.pop(pid, None)
                self._containers.pop(pid, None)
            self._models = {k: m for k, m in self._models.items() if k[0] not in freed}
            if self.python is not None:
                self.python.forget(freed)
            for runtime in self.runtimes:
                runtime.forget(freed)
            if self.go is not None:
                self.go.forget(freed)
        for small in (self._quiet_until, self._py_rescans, self._followups):
            for pid in [p for p in small if p not in live]:
                del small[pid]
        self._followed &= live
        mapped = {m.file_id for pid in live if (info := self.tracker.process(pid)) for m in info.mappings}
        unmapped = self._pinned - mapped
        stale, self._unmapped_before = unmapped & self._unmapped_before, unmapped - self._unmapped_before
        if stale:
            keys = set()
            for fid in stale:
                self.tracker.unpin(fid)
                key = file_id_u64(fid)
                keys.add(key)
                self.files.pop(key, None)
                self._mtimes.pop(key, None)
                self._unpinned[key] = None
            self._pinned -= stale
            if self._tables is not None:
                self._tables.forget(keys)
        now = time.monotonic()
        if now >= self._next_trim:  # what was freed goes back to the kernel (RSS levels off lower)
            self._next_trim = now + TRIM_EVERY_S
            malloc_trim()
        if self._inodes is not None and len(self._inodes) > INODE_SOFT_LIMIT and self._unpinned:
            excess = len(self._inodes) - INODE_SOFT_LIMIT + (1 << 10)
            victims = list(self._unpinned)[:excess]
            for key in victims:
                del self._unpinned[key]
            self._inodes.remove_files(set(victims))

    def upkeep_stats(self) -> dict[str, int]:
        """Sizes that must level off in a long run."""
        return {
            "tracked_pids": len(self._history),
            "pinned_files": len(self._pinned),
            "known_files": len(self.files),
            "python_frames": len(self.python.frames) if self.python is not None else 0,
        }

    # ---- what symbolization needs -------------------------------------------------------------------

    def lookup_mapping(self, pid: int, addr: int) -> ExecMapping | None:
        """The mapping holding `addr` in `pid`, also after the process is gone (the latest one)."""
        m = self.tracker.lookup(pid, addr)
        if m is not None:
            return m
        for old in reversed(self._history.get(pid, ())):
            if old.contains(addr):
                return old
        return None

    def mapping_model(self, pid: int, file_key: int) -> Mapping | None:
        """The Mapping of `file_key` in `pid`, or a process-less one when the process was never scanned."""
        got = self._models.get((pid, file_key))
        if got is None:
            ref = self.files.get(file_key)
            if ref is None:
                return None
            got = Mapping(file_id=ref.file_id, path=ref.path, build_id=ref.build_id)
        return got

    def container_id(self, pid: int) -> str:
        """The container id of `pid`, "" outside containers or when unknown."""
        return self._containers.get(pid, "")

    def anonymous_name(self, pid: int, addr: int) -> str:
        """A module name for code outside ELF files: the mapping's label ([anon:...], memfd), [jit] for
        anonymous code, or [unknown] outside every mapping."""
        m = self.lookup_mapping(pid, addr)
        if m is None:
            return "[unknown]"
        if m.path:
            return os.path.basename(m.path) if m.path.startswith("/") else m.path
        return "[jit]"

    # ---- reporting --------------------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Kernel counters, table usage and mapping counts."""
        out = self.sampler.stats()
        if self._tables is not None:
            out.update(self._tables.usage())
        if self._mapsync is not None:
            out["lpm_entries"] = self._mapsync.entries
            out["lpm_update_failures"] = self._mapsync.failures
        if self.python is not None:
            out.update(self.python.stats())
        for runtime in self.runtimes:
            out.update(runtime.stats())
        if self.go is not None:
            out.update(self.go.stats())
        if self.deferred is not None:
            out.update(self.deferred.stats())
        if self._inodes is not None:
            out["file_inodes"] = len(self._inodes)
        return out

    def goroutine_labels(self, pid: int, labels: int, tag: int) -> tuple[tuple[str, str], ...]:
        """The pprof labels of a sample's goroutine (its label set's address and tag), () when none."""
        return self.go.label_set(pid, labels, tag) if self.go is not None and labels else ()

    def resolve_interpreted(self, pid: int, raw: RawFrame) -> Frame | tuple[Frame, ...]:
        """The named frame of an interpreted raw frame (Python, PHP, Ruby, Perl), by its kind; the frames,
        root first, of one that stands for several (V8 code with inlined functions)."""
        for runtime in self.runtimes:
            if raw.kind == runtime.frame_kind:
                frames = runtime.resolve_frames(pid, raw)
                return frames[0] if len(frames) == 1 else frames
        if self.python is not None:
            return self.python.resolve(pid, raw)
        return Frame(kind=FrameKind.PYTHON, function="<python frame>")

    def regroup_frames(self, frames: bytes) -> bytes:
        """A stack's user frames with interpreter frames BPF sent in one place moved where they belong
        (Perl's, over its runops frames); the bytes unchanged for every other stack."""
        kinds = set(frames[20 :: layout.FRAME_SIZE])  # struct frame.kind of each frame
        for runtime in self.runtimes:
            if runtime.frame_kind in kinds:
                frames = runtime.regroup(frames)
        return frames

    def _in_vm_loop(self, key: int, elf_pc: int) -> bool:
        """Whether a pc is in an interpreter's VM loop (CPython's eval loop, execute_ex, rb_vm_exec): the
        replay of a deferred sample puts that call's tail frames there."""
        if self.python is not None and self.python.in_eval_loop(key, elf_pc):
            return True
        return any(runtime.in_vm_loop(key, elf_pc) for runtime in self.runtimes)

    def runtime_problem(self, pid: int) -> str:
        """The error frame's name when a PHP or Ruby engine of `pid` can't be walked (`[unwind: php: why]`),
        else ""."""
        for runtime in self.runtimes:
            why = runtime.unsupported.get(pid)
            if why:
                return f"[unwind: {runtime.name}: {why}]"
        return ""

    def table_messages(self) -> list[str]:
        """Files that fell back to frame pointers, one line each."""
        return list(self._tables.messages) if self._tables else []
