"""Load compiled unwind tables into the BPF maps: rows into the mmap'ed `unwind_rows` array, deduplicated
rules into `unwind_rules`, and each file's (start, count) into `file_tables`.

One table per file, shared by every process mapping it (agent/tables.py counts the mappings and unloads the
table with the last). When a table can't fit, that file falls back to frame pointers and the caller says so.
"""

from __future__ import annotations

import mmap
import struct
import threading
from array import array

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.nativeunwind.table import ROW_STRUCT, RULE_STRUCT, Rule, UnwindTable
from fleetprof.tracer import layout

ROW_SIZE = ROW_STRUCT.size
RULE_SIZE = RULE_STRUCT.size


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


class TableLoader:
    """Owns the kernel's unwind-table maps; thread-safe."""

    def __init__(self, rows: Map, rules: Map, file_tables: Map) -> None:
        self._rows_map = rows
        self._rules_map = rules
        self._file_tables = file_tables
        self._rules_mm = mmap.mmap(rules.fd, rules.max_entries * RULE_SIZE, mmap.MAP_SHARED)
        self._alloc = RangeAllocator(rows.max_entries)
        self._rule_ids: dict[Rule, int] = {}  # rules deduplicated across files
        self._loaded: dict[int, tuple[int, int]] = {}  # file key -> (first row, row count)
        self._lock = threading.Lock()

    def load(self, file_key: int, table: UnwindTable) -> None:
        """Put a file's table into the kernel (once per file; its users are counted by the caller).
        Raises TableSpaceError when it does not fit."""
        with self._lock:
            if file_key in self._loaded:
                return
            count = table.row_count
            if count == 0:
                raise TableSpaceError("empty table")
            lut = array("I", (self._rule_id(rule) for rule in table.rules))
            start = self._alloc.alloc(count)
            words = array("I", table.rows_bytes())  # {u32 pc; u32 file-local rule} -> global rule ids
            words[1::2] = array("I", [lut[i] for i in words[1::2]])
            self._write_rows(start, words.tobytes())
            key = struct.pack("<Q", file_key)
            try:
                self._file_tables.update(key, layout.FILE_TABLE_STRUCT.pack(start, count))
            except BpfError as exc:
                self._alloc.free(start, count)
                raise TableSpaceError(f"file_tables map is full ({exc})") from None
            self._loaded[file_key] = (start, count)

    def unload(self, file_key: int) -> None:
        """Take a file's table out of the kernel and free its rows."""
        with self._lock:
            got = self._loaded.pop(file_key, None)
            if got is None:
                return
            self._file_tables.delete(struct.pack("<Q", file_key))
            self._alloc.free(*got)

    def _write_rows(self, start: int, data: bytes) -> None:
        """Copy rows into the array through a temporary window, so the agent's RSS doesn't keep them."""
        off = start * ROW_SIZE
        base = off - off % mmap.ALLOCATIONGRANULARITY
        length = off - base + len(data)
        with mmap.mmap(self._rows_map.fd, length, mmap.MAP_SHARED, offset=base) as window:
            window[off - base : length] = data

    def _rule_id(self, rule: Rule) -> int:
        rid = self._rule_ids.get(rule)
        if rid is None:
            rid = len(self._rule_ids)
            if rid >= self._rules_map.max_entries:
                raise TableSpaceError(f"unwind rule array full ({rid} rules)")
            kind, rbp_kind, off, aux, rbp_off = rule
            RULE_STRUCT.pack_into(self._rules_mm, rid * RULE_SIZE, kind, rbp_kind, 0, off, aux, rbp_off)
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
