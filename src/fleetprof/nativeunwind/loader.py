"""Load compiled unwind tables into the BPF maps: rows into the mmap'ed `unwind_rows` array, deduplicated
rules into `unwind_rules`, and each file's (start, count) into `file_tables`.

One table per file, shared by every process mapping it (agent/tables.py decides which tables stay loaded and
evicts when space runs short). A file without a table gets a `file_tables` entry of count 0: BPF walks it by
frame pointers instead of waiting for a table. `find_rule` reads back what BPF reads, for the userspace
unwinder that finishes deferred stacks (nativeunwind/replay.py).
"""

from __future__ import annotations

import mmap
import struct
import threading
from array import array

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.nativeunwind.table import FRAME_POINTER_RULE, ROW_STRUCT, RULE_STRUCT, Rule, UnwindTable
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
        # Read-only view of every row for find_rule: pages are only touched by lookups.
        self._rows_mm = mmap.mmap(rows.fd, rows.max_entries * ROW_SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        self._rows_u32 = memoryview(self._rows_mm).cast("I")
        self._rule_list: list[Rule] = []
        self._no_table: set[int] = set()
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
            self._no_table.discard(file_key)
            self._loaded[file_key] = (start, count)

    def mark_no_table(self, file_key: int) -> None:
        """Tell BPF to walk this file by frame pointers (no table will come)."""
        with self._lock:
            if file_key in self._loaded:
                return
            try:
                self._file_tables.update(struct.pack("<Q", file_key), layout.FILE_TABLE_STRUCT.pack(0, 0))
            except BpfError:
                return  # no entry: BPF defers its samples and the agent finishes them by frame pointers
            self._no_table.add(file_key)

    def is_loaded(self, file_key: int) -> bool:
        """Whether BPF has this file's table (or its no-table mark)."""
        with self._lock:
            return file_key in self._loaded or file_key in self._no_table

    def find_rule(self, file_key: int, elf_pc: int) -> Rule | None:
        """The rule BPF would apply at `elf_pc`: None before the first row (no CFI), the frame-pointer
        rule for files without a table; raises KeyError when the table is not loaded."""
        with self._lock:
            got = self._loaded.get(file_key)
            if got is None:
                if file_key in self._no_table:
                    return FRAME_POINTER_RULE
                raise KeyError(file_key)
            start, count = got
            rows = self._rows_u32
            lo, hi = start, start + count
            while lo < hi:  # last row with pc <= elf_pc
                mid = (lo + hi) // 2
                if rows[2 * mid] <= elf_pc:
                    lo = mid + 1
                else:
                    hi = mid
            if lo == start:
                return None
            rid = rows[2 * (lo - 1) + 1]
            return self._rule_list[rid] if rid < len(self._rule_list) else None

    def unload(self, file_key: int) -> None:
        """Take a file's table out of the kernel and free its rows."""
        with self._lock:
            got = self._loaded.pop(file_key, None)
            if got is None:
                return
            self._file_tables.delete(struct.pack("<Q", file_key))
            self._alloc.free(*got)

    def loaded_keys(self) -> list[int]:
        """Files whose tables are in the kernel."""
        with self._lock:
            return list(self._loaded)

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
            kind, rbp_kind, off, aux, rbp_off, rbx_off = rule
            RULE_STRUCT.pack_into(self._rules_mm, rid * RULE_SIZE, kind, rbp_kind, rbx_off, off, aux, rbp_off)
            self._rule_ids[rule] = rid
            self._rule_list.append(rule)
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
        """Unmap the rule and row arrays."""
        self._rows_u32.release()
        self._rows_mm.close()
        self._rules_mm.close()
