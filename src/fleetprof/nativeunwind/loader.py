"""Load compiled unwind tables into the BPF maps: rows into the mmap'ed `unwind_rows` array, deduplicated
rules into `unwind_rules`, and each file's (start, count) into `file_tables`.

Tables are shared by every process mapping the same file and reference-counted; the last release frees
their rows. When a table can't fit, that file falls back to frame pointers and the caller is told once.
"""

from __future__ import annotations

import mmap
import struct
import threading
from array import array
from dataclasses import dataclass

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.tracer import layout

ROW_SIZE = 8
RULE_SIZE = 16


class TableSpaceError(Exception):
    """No room for a table in the BPF maps; the file falls back to frame pointers."""


class RangeAllocator:
    """First-fit allocator of index ranges in a fixed-size array, with coalescing of freed ranges."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[tuple[int, int]] = [(0, size)]  # sorted (start, length)

    def alloc(self, length: int) -> int:
        """Start of a free range of `length` slots; raises TableSpaceError when none is large enough."""
        for i, (start, free_len) in enumerate(self._free):
            if free_len >= length:
                if free_len == length:
                    del self._free[i]
                else:
                    self._free[i] = (start + length, free_len - length)
                return start
        raise TableSpaceError(f"no {length} free rows (capacity {self.size})")

    def free(self, start: int, length: int) -> None:
        """Return a range; merges with its neighbours."""
        free = self._free
        lo, hi = 0, len(free)
        while lo < hi:
            mid = (lo + hi) // 2
            if free[mid][0] < start:
                lo = mid + 1
            else:
                hi = mid
        free.insert(lo, (start, length))
        if lo + 1 < len(free) and free[lo][0] + free[lo][1] == free[lo + 1][0]:
            free[lo] = (free[lo][0], free[lo][1] + free[lo + 1][1])
            del free[lo + 1]
        if lo > 0 and free[lo - 1][0] + free[lo - 1][1] == free[lo][0]:
            free[lo - 1] = (free[lo - 1][0], free[lo - 1][1] + free[lo][1])
            del free[lo]

    @property
    def used(self) -> int:
        """Slots in use."""
        return self.size - sum(length for _, length in self._free)


@dataclass(slots=True)
class _Loaded:
    start: int
    count: int
    refs: int


class TableLoader:
    """Owns the kernel's unwind-table maps; thread-safe."""

    def __init__(self, rows: Map, rules: Map, file_tables: Map) -> None:
        self._rows_map = rows
        self._rules_map = rules
        self._file_tables = file_tables
        self._rules_mm = mmap.mmap(rules.fd, rules.max_entries * RULE_SIZE, mmap.MAP_SHARED)
        self._alloc = RangeAllocator(rows.max_entries)
        self._rule_ids: dict[bytes, int] = {}
        self._loaded: dict[int, _Loaded] = {}
        self._lock = threading.Lock()

    def has(self, file_key: int) -> bool:
        """Whether the table for this 64-bit file key is loaded."""
        with self._lock:
            return file_key in self._loaded

    def acquire(self, file_key: int, rows: bytes, rules: list[bytes]) -> None:
        """Load (or share) a table. `rows` are packed {u32 pc; u32 local rule index}; `rules` packed 16-byte
        rules indexed by the local index. Raises TableSpaceError when it does not fit."""
        with self._lock:
            got = self._loaded.get(file_key)
            if got is not None:
                got.refs += 1
                return
            count = len(rows) // ROW_SIZE
            if count == 0:
                raise TableSpaceError("empty table")
            lut = array("I", (self._rule_id(rule) for rule in rules))
            start = self._alloc.alloc(count)
            words = array("I", rows)
            words[1::2] = array("I", [lut[i] for i in words[1::2]])
            self._write_rows(start, words.tobytes())
            key = struct.pack("<Q", file_key)
            try:
                self._file_tables.update(key, layout.FILE_TABLE_STRUCT.pack(start, count))
            except BpfError as exc:
                self._alloc.free(start, count)
                raise TableSpaceError(f"file_tables map is full ({exc})") from None
            self._loaded[file_key] = _Loaded(start, count, 1)

    def add_ref(self, file_key: int) -> bool:
        """Share an already loaded table; False when it is not loaded."""
        with self._lock:
            got = self._loaded.get(file_key)
            if got is None:
                return False
            got.refs += 1
            return True

    def release(self, file_key: int) -> None:
        """Drop one reference; the last one unloads the table."""
        with self._lock:
            got = self._loaded.get(file_key)
            if got is None:
                return
            got.refs -= 1
            if got.refs > 0:
                return
            del self._loaded[file_key]
            self._file_tables.delete(struct.pack("<Q", file_key))
            self._alloc.free(got.start, got.count)

    def _write_rows(self, start: int, data: bytes) -> None:
        """Copy rows into the array through a temporary window, so the agent's RSS doesn't keep them."""
        off = start * ROW_SIZE
        base = off - off % mmap.ALLOCATIONGRANULARITY
        length = off - base + len(data)
        with mmap.mmap(self._rows_map.fd, length, mmap.MAP_SHARED, offset=base) as window:
            window[off - base : length] = data

    def _rule_id(self, rule: bytes) -> int:
        rid = self._rule_ids.get(rule)
        if rid is None:
            rid = len(self._rule_ids)
            if rid >= self._rules_map.max_entries:
                raise TableSpaceError(f"unwind rule array full ({rid} rules)")
            self._rules_mm[rid * RULE_SIZE : (rid + 1) * RULE_SIZE] = rule
            self._rule_ids[rule] = rid
        return rid

    def usage(self) -> dict[str, int]:
        """Sizes worth reporting: rows and rules used and their capacity, tables loaded, bytes."""
        with self._lock:
            return {
                "unwind_tables": len(self._loaded),
                "unwind_rows_used": self._alloc.used,
                "unwind_rows_capacity": self._alloc.size,
                "unwind_rules_used": len(self._rule_ids),
                "unwind_rules_capacity": self._rules_map.max_entries,
                "unwind_map_bytes": self._alloc.size * ROW_SIZE + self._rules_map.max_entries * RULE_SIZE,
            }

    def close(self) -> None:
        """Unmap the rule array."""
        self._rules_mm.close()
