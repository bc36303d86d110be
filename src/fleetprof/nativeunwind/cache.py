"""On-disk cache of compiled unwind tables, keyed by file id, so a host compiles each file once.

File layout (little-endian): header {8s magic; u32 version; u32 kind; u32 rows; u32 rules; u32 meta_len;
u32 crc32 of the payload}, then the payload: rows (struct unwind_row[]), rules (struct unwind_rule[]) and
JSON metadata (stats, or the error message of a file that cannot be tabled). A wrong magic, version,
length or checksum makes the entry a miss, and the file is compiled again and rewritten atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import tempfile
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

from fleetprof.nativeunwind.compiler import compile_unwind_table
from fleetprof.nativeunwind.errors import UnwindTableError
from fleetprof.nativeunwind.table import ROW_STRUCT, RULE_STRUCT, UnwindStats, UnwindTable

CACHE_MAGIC = b"FPUWTAB\0"
CACHE_VERSION = 6
"""Bump whenever the table layout or the compiler's output for the same input changes."""
_HEADER = struct.Struct("<8sIIIIII")
_KIND_TABLE = 0
_KIND_ERROR = 1
_SAFE_ID = re.compile(r"[0-9A-Za-z_.-]{1,128}")


@dataclass(slots=True)
class CacheCounters:
    """What the cache did, for the agent's stats."""

    hits: int = 0
    compiled: int = 0
    rejected: int = 0


class UnwindTableCache:
    """Compile-once cache of unwind tables under `cache_dir` (created on first use)."""

    def __init__(self, cache_dir: str | os.PathLike[str], version: int = CACHE_VERSION) -> None:
        self.cache_dir = Path(cache_dir)
        self.version = version
        self.counters = CacheCounters()

    def entry_path(self, file_id: str) -> Path:
        """Where the table of `file_id` is stored."""
        name = file_id if _SAFE_ID.fullmatch(file_id) else hashlib.sha256(file_id.encode()).hexdigest()
        return self.cache_dir / f"{name}.uwt"

    def get(self, path: str, file_id: str, debug_path: str | None = None) -> UnwindTable:
        """The table of `path` (identified by `file_id`): from the cache, else compiled and stored.

        Raises UnwindTableError for a file that cannot be tabled; that outcome is cached too, unless the
        file could not even be read (a transient failure).
        """
        entry = self.entry_path(file_id)
        cached = self._load(entry)
        if cached is not None:
            self.counters.hits += 1
            if isinstance(cached, str):
                raise UnwindTableError(cached)
            return cached
        self.counters.compiled += 1
        try:
            table = compile_unwind_table(path, debug_path)
        except UnwindTableError as exc:
            if not exc.transient:
                self._store(entry, _KIND_ERROR, b"", b"", {"error": str(exc)}, 0, 0)
            raise
        self._store(entry, _KIND_TABLE, table.rows_bytes(), table.rules_bytes(), table.stats.to_dict(),
                    table.row_count, len(table.rules))  # fmt: skip
        return table

    def cached(self, file_id: str) -> UnwindTable | None:
        """The table of `file_id` if the cache holds it (no compilation); raises UnwindTableError for a
        file known not to be tabled."""
        found = self._load(self.entry_path(file_id))
        if found is None:
            return None
        self.counters.hits += 1
        if isinstance(found, str):
            raise UnwindTableError(found)
        return found

    def _load(self, entry: Path) -> UnwindTable | str | None:
        """A cached table, a cached error message, or None when absent or unusable."""
        try:
            blob = entry.read_bytes()
        except OSError:
            return None
        parsed = self._parse(blob)
        if parsed is None:
            self.counters.rejected += 1
        return parsed

    def _parse(self, blob: bytes) -> UnwindTable | str | None:
        """Decode an entry, checking magic, version, lengths and checksum before trusting any of it."""
        if len(blob) < _HEADER.size:
            return None
        magic, version, kind, n_rows, n_rules, meta_len, crc = _HEADER.unpack_from(blob)
        rows_end = _HEADER.size + n_rows * ROW_STRUCT.size
        rules_end = rows_end + n_rules * RULE_STRUCT.size
        if magic != CACHE_MAGIC or version != self.version or rules_end + meta_len != len(blob):
            return None
        if zlib.crc32(memoryview(blob)[_HEADER.size :]) != crc:
            return None
        try:
            meta = json.loads(blob[rules_end:])
        except ValueError:
            return None
        if kind == _KIND_ERROR:
            return str(meta.get("error", "cannot be tabled"))
        rows = array("Q")
        rows.frombytes(blob[_HEADER.size : rows_end])
        rules = [
            (k, rk, off, aux, roff, bx)
            for k, rk, bx, off, aux, roff in RULE_STRUCT.iter_unpack(blob[rows_end:rules_end])
        ]
        return UnwindTable(rows, rules, UnwindStats.from_dict(meta))

    def _store(
        self,
        entry: Path,
        kind: int,
        rows: bytes,
        rules: bytes,
        meta: dict[str, object],
        n_rows: int,
        n_rules: int,
    ) -> None:
        """Write an entry atomically (temporary file + rename); a failure to write only costs a recompile."""
        payload = rows + rules + json.dumps(meta, separators=(",", ":")).encode()
        meta_len = len(payload) - len(rows) - len(rules)
        header = _HEADER.pack(CACHE_MAGIC, self.version, kind, n_rows, n_rules, meta_len, zlib.crc32(payload))
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".uwt")
            try:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(header)
                    stream.write(payload)
                os.replace(tmp, entry)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            return
