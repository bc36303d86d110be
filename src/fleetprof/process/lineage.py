"""Parent links between processes, to answer "is P a descendant of R" for `record -- CMD`.

Links come from fork events (`note`) or /proc/PID/stat and are kept after a process exits, so a
grandchild stays attributed to the root even when the middle process is gone; a bounded LRU.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from fleetprof.process.procfs import ProcFS

_MAX_DEPTH = 4096


class Lineage:
    """Cached pid → parent pid links, read lazily from /proc."""

    def __init__(self, procfs: ProcFS, capacity: int = 65536) -> None:
        self._procfs = procfs
        self._capacity = capacity
        self._lock = threading.Lock()
        self._parent: OrderedDict[int, int] = OrderedDict()

    def note(self, pid: int, ppid: int) -> None:
        """Record that `pid`'s parent is `ppid` (from a fork event or a fresh stat read)."""
        with self._lock:
            self._parent[pid] = ppid
            self._parent.move_to_end(pid)
            while len(self._parent) > self._capacity:
                self._parent.popitem(last=False)

    def parent(self, pid: int) -> int | None:
        """Parent of `pid`, from the cache or /proc/PID/stat; None when unknown and gone."""
        with self._lock:
            cached = self._parent.get(pid)
        if cached is not None:
            return cached
        try:
            ppid = self._procfs.stat(pid).ppid
        except OSError:
            return None
        self.note(pid, ppid)
        return ppid

    def is_descendant(self, pid: int, root: int) -> bool:
        """True when `root` is `pid` or one of its ancestors."""
        current: int | None = pid
        for _ in range(_MAX_DEPTH):
            if current == root:
                return True
            if current is None or current <= 0:
                return False
            current = self.parent(current)
        return False
