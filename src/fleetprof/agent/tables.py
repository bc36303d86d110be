"""Unwind tables for the files processes map: compiled in a worker process (cached on disk per file id),
loaded into BPF once per file and shared by every mapping of that file. The compiler is pure Python and
busy for seconds on a big file: in a thread it would hold the GIL the sampling loop needs to read a new
process's maps before the process is gone.

A table stays loaded after the last mapping of its file goes (the next run of the same program, a build
farm's thousandth `cc1`, finds it ready). When space runs short, tables of files no longer mapped go first
(longest unmapped first), then those least recently used; an evicted table comes back on demand, when BPF
defers a sample for want of it; samples that waited for a table evicted meanwhile are finished from the
disk cache's copy. A file fails for good only when its table can't be built at all or is
larger than the whole table space; BPF then walks it by frame pointers.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from fleetprof.nativeunwind.cache import UnwindTableCache
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.loader import TableLoader, TableSpaceError
from fleetprof.nativeunwind.table import Rule, UnwindTable

log = logging.getLogger(__name__)
MAX_MESSAGES = 1000  # fallback lines kept for the end-of-run summary (an agent runs for weeks)
USER_TABLE_ROWS = 2_000_000  # rows of evicted tables kept in userspace for deferred samples (~16 MB)


@dataclass(frozen=True, slots=True)
class TableRequest:
    """A file whose table is wanted: its 64-bit BPF key, 128-bit id and a path that opens it."""

    file_key: int
    file_id: str
    open_path: str
    display_path: str


def _compile_to_cache(cache_dir: str, version: int, path: str, file_id: str) -> None:
    """In the worker process: compile `path` into the disk cache (its failures are cached there too), then
    hand the heap the compile grew back to the system: a worker that once compiled node's tables would
    otherwise keep their peak for the agent's lifetime."""
    with contextlib.suppress(UnwindTableError, OSError):
        UnwindTableCache(cache_dir, version).get(path, file_id)
    gc.collect()
    malloc_trim()


def malloc_trim() -> None:
    """glibc's malloc_trim(0): free heap pages back to the kernel (nothing elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


BIG_FILE = 64 << 20
"""Files from this size on compile in their own lane, so small programs' tables never wait behind them."""
TINY_FILE = 1 << 20
"""Files under this size (a C extension a Python program just imported, a small tool) compile in a lane of
their own: tens of milliseconds, never queued behind a libpython or a compiler's tables."""


def _file_size(req: TableRequest) -> int:
    """The file's size; unreadable now: last (its compile reports why, after the others)."""
    try:
        return os.stat(req.open_path).st_size
    except OSError:
        return 1 << 62


class _SmallestFirst:
    """The compile queue, smallest file first: a short-lived program's tables are not held behind a 600 MB
    library's (shortest job first; the stop marker goes before everything)."""

    def __init__(self) -> None:
        self._q: queue.PriorityQueue[tuple[int, int, TableRequest | None]] = queue.PriorityQueue()
        self._seq = itertools.count()

    def put(self, req: TableRequest | None) -> None:
        """Queue a request (None: stop the worker)."""
        if req is None:
            self._q.put((-1, next(self._seq), None))
            return
        self._q.put((_file_size(req), next(self._seq), req))

    def get(self) -> TableRequest | None:
        """The smallest queued request (blocks)."""
        return self._q.get()[2]


class TableManager:
    """Counts mappings per file, keeps tables in the kernel, evicts under pressure and reloads on demand."""

    def __init__(self, loader: TableLoader, cache: UnwindTableCache, in_process: bool = False) -> None:
        self._loader = loader
        self._cache = cache
        self._in_process = in_process  # compile in this process (tests); else in a worker process
        self._pool: Executor | None = None
        self._refs: dict[int, int] = {}
        self._requests: dict[int, TableRequest] = {}  # every file ever asked for, to reload after eviction
        self._last_used: dict[int, float] = {}  # file key -> monotonic time of last mapping or use
        self._failed: dict[int, str] = {}
        self._user_tables: dict[int, UnwindTable] = {}  # LRU order: evicted tables read from the cache
        self._lock = threading.Lock()
        self._tiny = _SmallestFirst()  # files under TINY_FILE
        self._small = _SmallestFirst()  # files under BIG_FILE
        self._big = _SmallestFirst()
        self._pending: set[int] = set()
        self._idle = threading.Event()
        self._idle.set()
        # Three lanes, each smallest file first: a 500 MB library's compilation holds only the big files,
        # a libpython's never holds a just-imported C extension's.
        self._threads = [
            threading.Thread(target=self._work, args=(lane,), name=f"fleetprof-tables-{name}", daemon=True)
            for name, lane in (("tiny", self._tiny), ("small", self._small), ("big", self._big))
        ]
        for thread in self._threads:
            thread.start()
        self._pool_lock = threading.Lock()
        # Tables the disk cache has load here, never queued behind a compilation.
        self._fast: queue.Queue[TableRequest | None] = queue.Queue()
        self._fast_thread = threading.Thread(
            target=self._fast_work, name="fleetprof-tables-cached", daemon=True
        )
        self._fast_thread.start()
        self.evictions = 0
        self.messages: list[str] = []  # one line per file that had to fall back to frame pointers

    def acquire(self, req: TableRequest) -> None:
        """A mapping of this file appeared."""
        with self._lock:
            self._refs[req.file_key] = self._refs.get(req.file_key, 0) + 1
            self._requests.setdefault(req.file_key, req)
            self._last_used[req.file_key] = time.monotonic()
        self.ensure_loaded(req.file_key)

    def release(self, file_key: int) -> None:
        """A mapping of this file went away; the table stays until space is needed."""
        with self._lock:
            n = self._refs.get(file_key, 0) - 1
            if n > 0:
                self._refs[file_key] = n
            else:
                self._refs.pop(file_key, None)

    def touch(self, file_key: int) -> None:
        """The file was just sampled (eviction keeps the recently used)."""
        self._last_used[file_key] = time.monotonic()

    def ensure_loaded(self, file_key: int) -> bool:
        """Start loading a known file's table unless it is loaded, loading or failed; False when the file
        was never asked for."""
        with self._lock:
            req = self._requests.get(file_key)
            if req is None:
                return False
            if file_key in self._failed or file_key in self._pending:
                return True
            self._pending.add(file_key)
            self._idle.clear()
        if self._loader.is_loaded(file_key):
            self._done(file_key)
            return True
        if not self._in_process:
            self._fast.put(req)  # off the caller's thread: the sampling loop must stay responsive
            return True
        if self._load_cached(req):
            return True
        self._enqueue(req)
        return True

    def state(self, file_key: int) -> str:
        """ "ready" (BPF has its table or its no-table mark), "pending" or "unknown"."""
        if self._loader.is_loaded(file_key):
            return "ready"
        with self._lock:
            if file_key in self._pending:
                return "pending"
            return "unknown" if file_key not in self._requests else "evicted"

    def find_rule(self, file_key: int, elf_pc: int) -> Rule | None:
        """The rule at `elf_pc` (see TableLoader.find_rule): from the kernel's copy, else from the disk
        cache (a table evicted while samples waited for it still finishes them); KeyError when neither
        has it yet."""
        try:
            return self._loader.find_rule(file_key, elf_pc)
        except KeyError:
            table = self._user_table(file_key)
            if table is None:
                raise
            return table.lookup(elf_pc)

    def _user_table(self, file_key: int) -> UnwindTable | None:
        """A compiled table read from the disk cache for userspace lookups, kept in a small LRU."""
        with self._lock:
            table = self._user_tables.pop(file_key, None)
            if table is not None:
                self._user_tables[file_key] = table
                return table
            req = self._requests.get(file_key)
        if req is None:
            return None
        try:
            table = self._cache.cached(req.file_id)
        except UnwindTableError:
            return None
        if table is None:
            return None
        with self._lock:
            self._user_tables[file_key] = table
            rows = sum(t.row_count for t in self._user_tables.values())
            while rows > USER_TABLE_ROWS and len(self._user_tables) > 1:
                rows -= self._user_tables.pop(next(iter(self._user_tables))).row_count
        return table

    def wait_idle(self, timeout: float) -> bool:
        """Block until queued compilations are done."""
        return self._idle.wait(timeout)

    def _done(self, file_key: int) -> None:
        with self._lock:
            self._pending.discard(file_key)
            if not self._pending:
                self._idle.set()

    def _enqueue(self, req: TableRequest) -> None:
        """Queue a compilation in the lane its file's size picks."""
        size = _file_size(req)
        (self._big if size >= BIG_FILE else self._small if size >= TINY_FILE else self._tiny).put(req)

    def _work(self, lane: _SmallestFirst) -> None:
        while True:
            req = lane.get()
            if req is None:
                return
            try:
                self._load(req, here=lane is self._tiny)
            finally:
                self._done(req.file_key)

    def _fast_work(self) -> None:
        while True:
            req = self._fast.get()
            if req is None:
                return
            try:
                loaded = self._load_cached(req)
            except Exception:  # a failed load goes to the compiling worker, which reports it
                loaded = False
            if not loaded:
                self._enqueue(req)

    def _load_cached(self, req: TableRequest) -> bool:
        """Load a table the disk cache already has, right away (compilations queue behind each other)."""
        try:
            table = self._cache.cached(req.file_id)
        except UnwindTableError:
            table = None  # a known failure: the worker records it
        if table is None:
            return False
        try:
            self._install(req, table)
        finally:
            self._done(req.file_key)
        return True

    def _load(self, req: TableRequest, here: bool = False) -> None:
        """Compile (in the worker process unless `here`: a tiny file's milliseconds are cheaper than a
        worker's start) and install."""
        if not self._in_process and not here:
            self._compile_elsewhere(req)  # then the cache has it (or its failure), like a reload
        try:
            table = self._cache.get(req.open_path, req.file_id)
        except (UnwindTableError, OSError) as exc:
            self._fail(req, str(exc))
            return
        self._install(req, table)

    def _compile_elsewhere(self, req: TableRequest) -> None:
        """Compile in the worker process; on any trouble with it, _load compiles here instead."""
        try:
            with self._pool_lock:
                if self._pool is None:
                    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding BPF objects
                    self._pool = ProcessPoolExecutor(max_workers=2, mp_context=ctx)
            future = self._pool.submit(
                _compile_to_cache, str(self._cache.cache_dir), self._cache.version, req.open_path, req.file_id
            )
            future.result()
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            log.info("unwind-table worker process failed (%s); compiling in the agent", exc)
            self._in_process = True

    def _install(self, req: TableRequest, table: UnwindTable) -> None:
        """Put a table into the kernel, evicting others while it does not fit."""
        while True:
            try:
                self._loader.load(req.file_key, table)
                return
            except TableSpaceError as exc:
                if not self._evict_one(req.file_key):
                    self._fail(req, str(exc))
                    return

    def _evict_one(self, keep: int) -> bool:
        """Unload one table: the longest-unmapped file first, then the least recently used."""
        with self._lock:
            loaded = [k for k in self._loader.loaded_keys() if k != keep]
            if not loaded:
                return False
            victim = min(loaded, key=lambda k: (k in self._refs, self._last_used.get(k, 0.0)))
        self._loader.unload(victim)
        self.evictions += 1
        with self._lock:
            req = self._requests.get(victim)
            if req is None:  # forgotten: nothing remembers it any more
                self._last_used.pop(victim, None)
        log.debug("evicted the unwind table of %s", req.display_path if req else f"file {victim:#x}")
        return True

    def forget(self, file_keys: set[int]) -> None:
        """Forget files no process maps any more (their open paths are about to close): a later mapping
        asks again with a fresh path. A loaded table stays until space is needed."""
        with self._lock:
            for key in file_keys:
                if self._refs.get(key) or key in self._pending:
                    continue
                self._requests.pop(key, None)
                self._failed.pop(key, None)
                if not self._loader.is_loaded(key):
                    self._last_used.pop(key, None)

    def _fail(self, req: TableRequest, why: str) -> None:
        reason = f"{req.display_path}: no unwind table ({why}); using frame pointers"
        with self._lock:
            self._failed[req.file_key] = reason
        self._loader.mark_no_table(req.file_key)
        if len(self.messages) < MAX_MESSAGES:
            self.messages.append(reason)
        log.info(reason)

    def usage(self) -> dict[str, int]:
        """Loader sizes plus files that fell back and evictions."""
        out = self._loader.usage()
        out["unwind_tables_failed"] = len(self._failed)
        out["unwind_tables_evicted"] = self.evictions
        return out

    def close(self) -> None:
        """Stop the worker thread and process."""
        self._fast.put(None)
        self._tiny.put(None)
        self._small.put(None)
        self._big.put(None)
        self._fast_thread.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
