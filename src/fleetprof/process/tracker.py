"""The agent's userspace model of every process' executable mappings.

Work is lazy: `rescan(pid)` when a sample names an unknown pid or a PC outside known mappings, plus
`on_exec`/`on_exit` from tracepoints and `scan_all()` at startup. Listeners receive each change so the
BPF LPM trie and unwind tables follow. Threading: mutating calls are serialized by one lock and may
block on file I/O (hand them to a worker thread); `lookup`, `process` and `thread_name` take no lock.
No public method raises on bad input or vanished processes: failures are counted in `stats()`.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from typing import Protocol

from fleetprof.cachedir import default_cache_dir
from fleetprof.process.bias import covered_by_text, load_bias
from fleetprof.process.container import container_id_from_cgroup
from fleetprof.process.counters import Counters
from fleetprof.process.files import FileFacts, FileStatus, FileTable, FileUnavailable
from fleetprof.process.lineage import Lineage
from fleetprof.process.maps import MapKind, MapsEntry, parse_maps
from fleetprof.process.procfs import ProcessGone, ProcFS, StatInfo, failure_reason
from fleetprof.process.vdso import VdsoStore
from fleetprof.profile.model import Mapping

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecMapping(MapsEntry):
    """One executable mapping of a process (its maps line), with what symbolization and unwinding need."""

    status: FileStatus = FileStatus.NO_FILE
    file_id: str = ""  # 32 hex digits; "" when UNREADABLE or NO_FILE
    build_id: str = ""
    bias: int = 0  # runtime address - ELF virtual address
    open_path: str = ""  # stable path reading the mapped file, valid while the file id is held
    error: str = ""  # one line when status is BAD_ELF or UNREADABLE

    def contains(self, address: int) -> bool:
        """Whether `address` falls inside this mapping."""
        return self.start <= address < self.end

    def elf_address(self, address: int) -> int:
        """The ELF virtual address (what nm and addr2line use) of runtime `address`."""
        return address - self.bias

    def to_model(self) -> Mapping:
        """The profile model's view of this mapping."""
        return Mapping(
            file_id=self.file_id,
            path=self.path,
            build_id=self.build_id,
            start=self.start,
            limit=self.end,
            offset=self.offset,
        )


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    """A tracked process: identity (pid, start_time), names, container and executable mappings."""

    pid: int
    start_time: int  # /proc/PID/stat field 22; a different value under the same pid means reuse
    ppid: int
    comm: str
    exe: str  # "" for kernel threads or when the main thread has exited
    container_id: str  # 64 hex digits, "" outside containers
    mappings: tuple[ExecMapping, ...]  # sorted by start


@dataclass(frozen=True, slots=True)
class MappingDiff:
    """What one rescan changed."""

    pid: int
    added: tuple[ExecMapping, ...]
    removed: tuple[ExecMapping, ...]
    new_process: bool  # first time this pid is tracked, or the pid now names a different process

    @property
    def changed(self) -> bool:
        """Whether any mapping was added or removed."""
        return bool(self.added or self.removed)


class TrackerListener(Protocol):
    """Receives changes as they are committed; called under the tracker lock, so keep it quick."""

    def mappings_added(self, pid: int, mappings: list[ExecMapping]) -> None:
        """New executable mappings of `pid`."""

    def mappings_removed(self, pid: int, mappings: list[ExecMapping]) -> None:
        """Mappings of `pid` that are gone (also sent, with all of them, before `process_exited`)."""

    def process_exited(self, pid: int) -> None:
        """`pid` is gone (or was reused: its new mappings follow as `mappings_added`)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    info: ProcessInfo
    starts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Resolved:
    mapping: ExecMapping
    maybe_gone: bool  # a /proc path of the process vanished while resolving


class ProcessTracker:
    """Tracks processes lazily from /proc; see the module docstring for the threading contract."""

    def __init__(
        self,
        proc_root: str = "/proc",
        cache_dir: str | None = None,
        linger_s: float = 30.0,
        thread_name_ttl_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._procfs = ProcFS(proc_root)
        self._counters = Counters()
        self._files = FileTable(self._counters, linger_s=linger_s, clock=clock)
        self._vdso = VdsoStore(self._procfs, cache_dir or str(default_cache_dir()), self._counters)
        self._lineage = Lineage(self._procfs)
        self._clock = clock
        self._thread_ttl = thread_name_ttl_s
        self._lock = threading.RLock()
        self._procs: dict[int, _Entry] = {}
        self._threads: dict[int, dict[int, tuple[str, float]]] = {}
        self._listeners: list[TrackerListener] = []

    def add_listener(self, listener: TrackerListener) -> None:
        """Send future changes to `listener`."""
        with self._lock:
            self._listeners.append(listener)

    def rescan(self, pid: int) -> MappingDiff | None:
        """Re-read /proc/PID/maps and commit the difference; None when the process is gone."""
        with self._lock:
            self._counters.inc("rescans")
            self._files.expire()
            return self._rescan(pid, exec_event=False)

    def on_exec(self, pid: int) -> MappingDiff | None:
        """`pid` exec'd: refresh its names and executable, and rescan its (new) address space."""
        with self._lock:
            self._counters.inc("execs")
            self._forget_threads(pid)
            return self._rescan(pid, exec_event=True)

    def on_exit(self, pid: int) -> None:
        """`pid` (a thread group leader) exited: drop it, release its files, tell listeners."""
        with self._lock:
            self._forget(pid)
            self._files.expire()

    def on_fork(self, parent: int, child: int) -> None:
        """Record a fork event's parent link, so descendant checks survive the parent's exit."""
        self._lineage.note(child, parent)

    def scan_all(self) -> list[MappingDiff]:
        """Rescan every process on the host (startup) and drop tracked ones that are gone."""
        pids = self._procfs.pids()
        diffs = [diff for pid in pids if (diff := self.rescan(pid)) is not None]
        for pid in set(self._procs).difference(pids):
            self.on_exit(pid)
        return diffs

    def sweep(self) -> list[int]:
        """Drop tracked processes that have exited or whose pid was reused; returns their pids."""
        dropped = []
        for pid, entry in list(self._procs.items()):
            if not self._alive(pid, entry.info.start_time):
                self.on_exit(pid)
                dropped.append(pid)
        return dropped

    def lookup(self, pid: int, address: int) -> ExecMapping | None:
        """The tracked mapping of `pid` holding `address`, or None (then a rescan may find it)."""
        entry = self._procs.get(pid)
        if entry is None:
            return None
        index = bisect.bisect_right(entry.starts, address) - 1
        if index < 0:
            return None
        mapping = entry.info.mappings[index]
        return mapping if address < mapping.end else None

    def process(self, pid: int) -> ProcessInfo | None:
        """What is known of `pid`, without reading /proc; None when it is not tracked."""
        entry = self._procs.get(pid)
        return entry.info if entry is not None else None

    def pids(self) -> list[int]:
        """Tracked process ids, ascending."""
        return sorted(self._procs)

    def thread_name(self, pid: int, tid: int) -> str:
        """Name of thread `tid`, re-read at most every `thread_name_ttl_s`; the last known after exit."""
        now = self._clock()
        cached = self._threads.get(pid, {}).get(tid)
        if cached is not None and now - cached[1] < self._thread_ttl:
            return cached[0]
        try:
            name = self._procfs.thread_comm(pid, tid)
        except OSError as exc:
            self._counters.inc(f"thread_name_{failure_reason(exc)}")
            return cached[0] if cached is not None else ""
        self._threads.setdefault(pid, {})[tid] = (name, now)
        return name

    def is_descendant(self, pid: int, root: int) -> bool:
        """Whether `root` is `pid` or an ancestor of it (parent links cached, fork events honoured)."""
        return self._lineage.is_descendant(pid, root)

    def warm(self, paths: Iterable[str]) -> None:
        """Parse and hold files a process is about to map, so its first rescan finds them cached."""
        for path in paths:
            try:
                self._files.acquire([path])
            except FileUnavailable:
                continue

    def pin(self, file_id: str) -> str:
        """Keep a file id's fd open until `unpin` (e.g. until symbolized); returns its path or ""."""
        return self._files.pin(file_id)

    def unpin(self, file_id: str) -> None:
        """Undo one `pin`."""
        self._files.release(file_id)

    def open_path(self, file_id: str) -> str:
        """Stable path that reads the file with this id while it is held; "" when not open."""
        return self._files.open_path(file_id)

    def stats(self) -> dict[str, int]:
        """Counters (rescans, failures by reason, cache hits) and current sizes."""
        counts = self._counters.snapshot()
        counts["processes"] = len(self._procs)
        counts["open_files"] = self._files.open_files
        counts["lingering_files"] = self._files.lingering
        return counts

    def close(self) -> None:
        """Forget everything and close every fd (listeners are not told)."""
        with self._lock:
            self._procs.clear()
            self._threads.clear()
            self._files.close()
            self._vdso.close()

    def __enter__(self) -> ProcessTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _rescan(self, pid: int, exec_event: bool) -> MappingDiff | None:
        try:
            st = self._procfs.stat(pid)
        except OSError as exc:
            self._counters.inc(f"stat_{failure_reason(exc)}")
            if isinstance(exc, ProcessGone):
                self._forget(pid)
            return None
        old = self._procs.get(pid)
        if old is not None and old.info.start_time != st.start_time:
            self._counters.inc("pid_reuse")
            self._forget(pid)
            old = None
        try:
            entries, task = self._read_maps(pid)
        except OSError as exc:
            self._counters.inc(f"maps_{failure_reason(exc)}")
            if isinstance(exc, ProcessGone):
                self._forget(pid)
                return None
            if old is not None:
                return MappingDiff(pid, (), (), False)
            entries, task = [], 0
        return self._commit(pid, st, old, entries, task, exec_event)

    def _read_maps(self, pid: int) -> tuple[list[MapsEntry], int]:
        """Executable mappings of `pid`, and the thread read through when the leader has exited."""
        raw = self._procfs.read_bytes(pid, "maps")
        task = 0
        if not raw:  # the leader has exited (or is exiting) while other threads run on
            for tid in self._procfs.tids(pid):
                if tid == pid:
                    continue
                try:
                    raw = self._procfs.read_bytes(pid, "task", str(tid), "maps")
                except OSError:
                    continue
                if raw:
                    task = tid
                    self._counters.inc("maps_via_thread")
                    break
        entries, malformed = parse_maps(raw)
        if malformed:
            self._counters.inc("maps_malformed_lines", malformed)
        return entries, task

    def _commit(
        self,
        pid: int,
        st: StatInfo,
        old: _Entry | None,
        entries: list[MapsEntry],
        task: int,
        exec_event: bool,
    ) -> MappingDiff | None:
        old_by_key = {m.key: m for m in old.info.mappings} if old is not None else {}
        by_key = {entry.key: entry for entry in entries}
        fresh = [self._resolve(pid, entry, task) for key, entry in by_key.items() if key not in old_by_key]
        retried = [
            self._resolve(pid, by_key[key], task)
            for key, m in old_by_key.items()
            if key in by_key and m.status is FileStatus.UNREADABLE
        ]
        if any(r.maybe_gone for r in fresh + retried) and not self._alive(pid, st.start_time):
            self._release(r.mapping for r in fresh + retried)
            self._forget(pid)
            return None
        recovered = [r.mapping for r in retried if r.mapping.status is not FileStatus.UNREADABLE]
        self._counters.inc("unreadable_recovered", len(recovered))
        added = [r.mapping for r in fresh] + recovered
        stale = {m.key for m in recovered}
        kept = [m for key, m in old_by_key.items() if key in by_key and key not in stale]
        removed = [m for key, m in old_by_key.items() if key not in by_key or key in stale]
        mappings = tuple(sorted(kept + added, key=lambda m: m.start))
        exe = self._procfs.exe(pid) or (old.info.exe if old is not None and not exec_event else "")
        info = ProcessInfo(
            pid=pid,
            start_time=st.start_time,
            ppid=st.ppid,
            comm=st.comm,
            exe=exe,
            container_id=old.info.container_id if old is not None else self._container_id(pid),
            mappings=mappings,
        )
        self._procs[pid] = _Entry(info, tuple(m.start for m in mappings))
        self._lineage.note(pid, st.ppid)
        self._release(removed)
        if removed:
            self._notify("mappings_removed", pid, removed)
        if added:
            self._notify("mappings_added", pid, added)
        return MappingDiff(pid, tuple(added), tuple(removed), old is None)

    def _resolve(self, pid: int, entry: MapsEntry, task: int) -> _Resolved:
        base = ExecMapping(**{f.name: getattr(entry, f.name) for f in fields(MapsEntry)})
        if entry.kind is MapKind.ANON:
            return _Resolved(base, False)
        if entry.kind is MapKind.VDSO:
            return _Resolved(self._resolve_vdso(pid, base), False)
        candidates = []
        if task == 0:
            candidates.append(self._procfs.map_file(pid, *entry.open_range))
        if entry.kind is MapKind.FILE and not entry.deleted:
            candidates.append(self._procfs.rooted(pid, entry.path, task))
        try:
            facts, open_path = self._files.acquire(candidates)
        except FileUnavailable as exc:
            self._counters.inc("mapping_unreadable")
            unreadable = replace(
                base,
                status=FileStatus.UNREADABLE,
                bias=entry.start - entry.offset,
                error=f"cannot open the mapped file ({exc.reason})",
            )
            return _Resolved(unreadable, exc.reason == "gone")
        length = entry.end - entry.start
        if entry.remapped and facts.elf is not None and not covered_by_text(facts.elf, entry.offset, length):
            # The file's ELF does not confirm the copy: plain anonymous code.
            self._files.release(facts.file_id)
            self._counters.inc("remap_rejected")
            anonymous = replace(base, offset=0, dev=0, inode=0, path="", kind=MapKind.ANON, remapped=False)
            return _Resolved(anonymous, False)
        return _Resolved(self._with_file(base, facts, open_path), False)

    def _resolve_vdso(self, pid: int, base: ExecMapping) -> ExecMapping:
        image = self._vdso.resolve(pid, base.start, base.end)
        if image is None:
            return replace(base, status=FileStatus.UNREADABLE, error="cannot read the vDSO")
        self._files.add_permanent(image.facts.file_id, image.path)
        return self._with_file(base, image.facts, image.path)

    def _with_file(self, base: ExecMapping, facts: FileFacts, open_path: str) -> ExecMapping:
        """`base` with its file's identity and load bias (`start - offset` when no PT_LOAD explains it)."""
        bias = load_bias(facts.elf, base.start, base.offset) if facts.elf is not None else None
        if bias is None:
            if facts.elf is not None:
                self._counters.inc("bias_no_segment")
            bias = base.start - base.offset
        return replace(
            base,
            status=facts.status,
            file_id=facts.file_id,
            build_id=facts.build_id,
            bias=bias,
            open_path=open_path,
            error=facts.error,
        )

    def _alive(self, pid: int, start_time: int) -> bool:
        try:
            return self._procfs.stat(pid).start_time == start_time
        except OSError:
            return False

    def _container_id(self, pid: int) -> str:
        try:
            return container_id_from_cgroup(self._procfs.read_text(pid, "cgroup"))
        except OSError as exc:
            self._counters.inc(f"cgroup_{failure_reason(exc)}")
            return ""

    def _release(self, mappings: Iterable[ExecMapping]) -> None:
        for mapping in mappings:
            if mapping.file_id and mapping.kind is not MapKind.VDSO:
                self._files.release(mapping.file_id)

    def _forget(self, pid: int) -> None:
        entry = self._procs.pop(pid, None)
        self._forget_threads(pid)
        if entry is None:
            return
        self._counters.inc("exits")
        mappings = list(entry.info.mappings)
        self._release(mappings)
        if mappings:
            self._notify("mappings_removed", pid, mappings)
        self._notify("process_exited", pid)

    def _forget_threads(self, pid: int) -> None:
        self._threads.pop(pid, None)

    def _notify(self, event: str, pid: int, *args: list[ExecMapping]) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, event)(pid, *args)
            except Exception:  # a listener bug must not break tracking; it is logged and counted
                self._counters.inc("listener_errors")
                log.exception("process tracker listener %r failed on %s(%d)", listener, event, pid)
