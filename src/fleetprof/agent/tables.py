"""Unwind tables for the files processes map: compiled in a worker thread (cached on disk per file id),
loaded into BPF once per file, shared by every mapping of that file, unloaded when the last goes."""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass

from fleetprof.nativeunwind.cache import UnwindTableCache
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.loader import TableLoader, TableSpaceError
from fleetprof.nativeunwind.table import UnwindTable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TableRequest:
    """A file whose table is wanted: its 64-bit BPF key, 128-bit id and a path that opens it."""

    file_key: int
    file_id: str
    open_path: str
    display_path: str


class TableManager:
    """Reference-counts files by mapping and keeps their tables in the kernel."""

    def __init__(self, loader: TableLoader, cache: UnwindTableCache) -> None:
        self._loader = loader
        self._cache = cache
        self._refs: dict[int, int] = {}
        self._failed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[TableRequest | None] = queue.Queue()
        self._pending: set[int] = set()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name="fleetprof-tables", daemon=True)
        self._thread.start()
        self.messages: list[str] = []  # one line per file that had to fall back to frame pointers

    def acquire(self, req: TableRequest) -> None:
        """A mapping of this file appeared."""
        with self._lock:
            n = self._refs.get(req.file_key, 0)
            self._refs[req.file_key] = n + 1
            if n or req.file_key in self._failed or req.file_key in self._pending:
                return
            self._pending.add(req.file_key)
            self._idle.clear()
        if self._load_cached(req):
            return
        self._queue.put(req)

    def release(self, file_key: int) -> None:
        """A mapping of this file went away."""
        with self._lock:
            n = self._refs.get(file_key, 0) - 1
            if n > 0:
                self._refs[file_key] = n
                return
            self._refs.pop(file_key, None)
        self._loader.unload(file_key)

    def wait_idle(self, timeout: float) -> bool:
        """Block until queued compilations are done (used by `record` before it starts a command)."""
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            req = self._queue.get()
            if req is None:
                return
            try:
                self._load(req)
            finally:
                with self._lock:
                    self._pending.discard(req.file_key)
                    if not self._pending:
                        self._idle.set()

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
            with self._lock:
                self._pending.discard(req.file_key)
                if not self._pending:
                    self._idle.set()
        return True

    def _load(self, req: TableRequest) -> None:
        with self._lock:
            if req.file_key not in self._refs:
                return  # every mapping went away meanwhile
        try:
            table = self._cache.get(req.open_path, req.file_id)
        except (UnwindTableError, OSError) as exc:
            self._fail(req, str(exc))
            return
        self._install(req, table)

    def _install(self, req: TableRequest, table: UnwindTable) -> None:
        """Put a table into the kernel, unless every mapping of its file went away meanwhile."""
        try:
            self._loader.load(req.file_key, table)
        except TableSpaceError as exc:
            self._fail(req, str(exc))
            return
        with self._lock:
            still_used = req.file_key in self._refs
        if not still_used:
            self._loader.unload(req.file_key)

    def _fail(self, req: TableRequest, why: str) -> None:
        reason = f"{req.display_path}: no unwind table ({why}); using frame pointers"
        with self._lock:
            self._failed[req.file_key] = reason
        self.messages.append(reason)
        log.info(reason)

    def usage(self) -> dict[str, int]:
        """Loader sizes plus files that fell back."""
        out = self._loader.usage()
        out["unwind_tables_failed"] = len(self._failed)
        return out

    def close(self) -> None:
        """Stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout=5)
