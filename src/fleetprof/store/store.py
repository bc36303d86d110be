"""The profile store: idempotent, all-or-nothing ingest of `Profile`s plus symbols, hosts and retention.

One `Store` serves a whole process and is thread-safe: ingests are serialized (their cost is building rows
in Python), queries run in parallel on per-thread engine handles.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from fleetprof.profile.columns import ColumnarProfile
from fleetprof.profile.model import Frame, Profile
from fleetprof.store import schema
from fleetprof.store.backend import Backend, ChdbBackend, Params, ServerBackend, StoreError
from fleetprof.store.migrations import migrate
from fleetprof.store.rows import IdCache, build_group
from fleetprof.store.schema import Layout

_TTL_TABLES = (
    schema.SAMPLES,
    *(schema.pyramid_table(f) for f in schema.PYRAMID_LEVELS),
    schema.SAMPLED,
    schema.STACKS,
    schema.FRAMES,
    schema.HOSTS,
    schema.BATCHES,
)


class Store:
    """Profiles in ClickHouse (embedded chDB or a server), behind the API the server and queries use."""

    def __init__(self, backend: Backend, layout: Layout, schema_version: int | None = None) -> None:
        """Bring the schema up to date (or to `schema_version`) and apply the retention."""
        self.backend = backend
        self.layout = layout
        self.version = migrate(backend, layout, schema_version)
        self._ingest_lock = threading.Lock()
        self._cache = IdCache()
        self._batches: OrderedDict[str, None] = OrderedDict()
        self._apply_retention()

    # -- names and raw queries (for fleetprof.query) --------------------------------------------------
    def t(self, name: str) -> str:
        """Qualified name of a logical table (`db.samples`), the one to query and insert into."""
        return self.layout.table(name)

    def query(self, sql: str, params: Params | None = None) -> pa.Table:
        """Run a parameterized SELECT; values must come in `params`, never in `sql`."""
        return self.backend.query(sql, params)

    # -- ingest ---------------------------------------------------------------------------------------
    def ingest(self, profile: Profile | ColumnarProfile, batch_id: str | None = None) -> int:
        """Store one profile; returns samples written (0 for a batch id seen before). All or nothing."""
        return self.ingest_many([(profile, batch_id)])[0]

    def ingest_many(self, batches: Sequence[tuple[Profile | ColumnarProfile, str | None]]) -> list[int]:
        """Store several profiles (objects or columns, fleetprof.profile.columns) with one INSERT per table
        (group commit), all or nothing together; returns samples written per batch (0 for batch ids seen
        before or repeated in `batches`)."""
        with self._ingest_lock:
            now_ms = time.time_ns() // 1_000_000
            written = [0] * len(batches)
            fresh: list[int] = []
            ids_in_group: set[str] = set()
            seen = self._seen_batches([b for _, b in batches if b is not None])
            for i, (_, batch_id) in enumerate(batches):
                if batch_id is not None and (batch_id in ids_in_group or batch_id in seen):
                    continue
                if batch_id is not None:
                    ids_in_group.add(batch_id)
                fresh.append(i)
            if not fresh:
                return written
            rows = build_group([batches[i][0] for i in fresh], self._cache, now_ms)
            names = [batches[i][1] or f"anon-{now_ms}-{id(batches[i][0])}" for i in fresh]
            token = hashlib.sha256("\0".join(names).encode()).hexdigest()
            dedup = {"insert_deduplication_token": token, "insert_deduplicate": 1}
            # Content-addressed rows first (harmless if the batch fails), samples last as the commit point.
            for table in ("frames", "stacks", "executables"):
                data = getattr(rows, table)
                if data.num_rows:
                    self.backend.insert(self.t(table), data)
            if rows.samples.num_rows:
                self.backend.insert(self.t("samples"), rows.samples, dedup)
            self.backend.insert(self.t("hosts"), rows.host, dedup)
            ids = [batches[i][1] for i in fresh if batches[i][1] is not None]
            if ids:
                counts = [
                    n for i, n in zip(fresh, rows.sample_counts, strict=True) if batches[i][1] is not None
                ]
                self.backend.insert(
                    self.t("batches"), pa.table({"batch_id": ids, "samples": pa.array(counts, pa.uint64())})
                )
                for batch_id in ids:
                    self._remember_batch(batch_id)
            self._cache.commit(rows)
            for i, n in zip(fresh, rows.sample_counts, strict=True):
                written[i] = n
            return written

    def _seen_batches(self, batch_ids: list[str]) -> set[str]:
        """Which of `batch_ids` were ingested before (memory first, then the batches table)."""
        seen = {b for b in batch_ids if b in self._batches}
        unknown = [b for b in batch_ids if b not in seen]
        if unknown:
            found = self.query(
                f"SELECT DISTINCT batch_id FROM {self.t('batches')} WHERE batch_id IN {{b:Array(String)}}",
                {"b": unknown},
            )
            for batch_id in found.column("batch_id").to_pylist():
                self._remember_batch(batch_id)
                seen.add(batch_id)
        return seen

    def _remember_batch(self, batch_id: str) -> None:
        """Keep the last 100 000 batch ids in memory."""
        self._batches[batch_id] = None
        if len(self._batches) > 100_000:
            self._batches.popitem(last=False)

    # -- symbols --------------------------------------------------------------------------------------
    def missing_symbols(self, limit: int = 10_000) -> list[tuple[str, str, int]]:
        """(file id, build id, address) of raw native frames that have no symbols row yet."""
        table = self.query(
            f"SELECT file_id, any(build_id) AS build_id, address FROM {self.t('frames')} "
            f"WHERE kind = 1 AND function = '' AND file_id != '' AND (file_id, address) GLOBAL NOT IN "
            f"(SELECT file_id, address FROM {self.t('symbols')}) "
            "GROUP BY file_id, address ORDER BY file_id, address LIMIT {limit:UInt32}",
            {"limit": max(int(limit), 0)},
        )
        return [(r["file_id"], r["build_id"], r["address"]) for r in table.to_pylist()]

    def put_symbols(self, rows: Iterable[tuple[str, int, tuple[Frame, ...]]]) -> int:
        """Store symbolized frames (outermost first) per (file id, address); empty means 'unknown'."""
        cols: dict[str, list[Any]] = {
            k: [] for k in ("file_id", "address", "functions", "files", "lines", "start_lines", "inlined",
                            "system_names")
        }  # fmt: skip
        for file_id, address, frames in rows:
            cols["file_id"].append(file_id)
            cols["address"].append(address & 0xFFFFFFFFFFFFFFFF)
            cols["functions"].append([f.function for f in frames])
            cols["files"].append([f.file for f in frames])
            cols["lines"].append([max(f.line, 0) for f in frames])
            cols["start_lines"].append([max(f.start_line, 0) for f in frames])
            cols["inlined"].append([int(f.inlined) for f in frames])
            cols["system_names"].append([f.system_name for f in frames])
        if not cols["file_id"]:
            return 0
        table = pa.table(
            {
                "file_id": pa.array(cols["file_id"], pa.string()),
                "address": pa.array(cols["address"], pa.uint64()),
                "functions": pa.array(cols["functions"], pa.list_(pa.string())),
                "files": pa.array(cols["files"], pa.list_(pa.string())),
                "lines": pa.array(cols["lines"], pa.list_(pa.uint32())),
                "start_lines": pa.array(cols["start_lines"], pa.list_(pa.uint32())),
                "inlined": pa.array(cols["inlined"], pa.list_(pa.uint8())),
                "system_names": pa.array(cols["system_names"], pa.list_(pa.string())),
            }
        )
        self.backend.insert(self.t("symbols"), table)
        return table.num_rows

    def put_symbol_file(self, file_id: str, data: bytes) -> None:
        """Store the compact symbol data uploaded for one file id (latest upload wins)."""
        self.backend.insert(
            self.t("symbol_files"),
            pa.table(
                {
                    "file_id": [file_id],
                    "data": pa.array([data], pa.binary()),
                    "size": pa.array([len(data)], pa.uint64()),
                }
            ),
        )

    def get_symbol_file(self, file_id: str) -> bytes | None:
        """The latest symbol data uploaded for `file_id`, or None."""
        table = self.query(
            f"SELECT argMax(data, uploaded_at) AS data FROM {self.t('symbol_files')} "
            "WHERE file_id = {f:String} GROUP BY file_id",
            {"f": file_id},
        )
        if not table.num_rows:
            return None
        return table.column("data").cast(pa.binary())[0].as_py()  # bytes, not necessarily UTF-8

    def has_symbol_file(self, file_id: str) -> bool:
        """Whether symbol data for `file_id` was uploaded."""
        table = self.query(
            f"SELECT count() AS n FROM {self.t('symbol_files')} WHERE file_id = {{f:String}}", {"f": file_id}
        )
        return bool(table.column("n")[0].as_py())

    # -- hosts, retention, housekeeping ---------------------------------------------------------------
    def hosts(self) -> list[dict[str, Any]]:
        """Every host that reported: identity from its latest report, last report time, samples stored."""
        table = self.query(
            "SELECT host_name, host_id, argMax(agent_version, report_time) AS agent_version, "
            "argMax(kernel, report_time) AS kernel, argMax(os, report_time) AS os, "
            "argMax(arch, report_time) AS arch, argMax(cpu_model, report_time) AS cpu_model, "
            "argMax(cores, report_time) AS cores, "
            "toUnixTimestamp64Milli(max(report_time)) AS last_report_ms, "
            "sum(samples) AS samples "
            f"FROM {self.t('hosts')} GROUP BY host_name, host_id ORDER BY host_name, host_id"
        )
        out = []
        for row in table.to_pylist():
            row["last_report_ns"] = int(row.pop("last_report_ms")) * 1_000_000
            out.append(row)
        return out

    def _apply_retention(self) -> None:
        """Change the TTL of every expiring table when the configured retention differs from the stored."""
        meta = self.query(
            f"SELECT argMax(value, updated_at) AS v FROM {self.t('meta')} WHERE key = 'retention_days'"
        )
        stored = meta.column("v")[0].as_py() if meta.num_rows else None
        wanted = str(self.layout.retention_days)
        if stored == wanted:
            return
        if stored is not None:
            for table in self._ttl_tables():
                self.backend.execute(
                    f"ALTER TABLE {self.layout.local(table.name)}{self.layout.on_cluster} "
                    f"MODIFY TTL {schema.ttl_clause(self.layout, table)}"
                )
        self.backend.execute(
            f"INSERT INTO {self.t('meta')} (key, value) SELECT 'retention_days', {{v:String}}", {"v": wanted}
        )

    def _ttl_tables(self) -> list[schema.Table]:
        """Expiring tables present at this schema version."""
        return [t for t in _TTL_TABLES if _present(t.name, self.version)]

    def optimize(self) -> None:
        """Merge every expiring table now (`OPTIMIZE … FINAL`): applies TTL drops and replacements."""
        for table in self._ttl_tables():
            self.backend.execute(
                f"OPTIMIZE TABLE {self.layout.local(table.name)}{self.layout.on_cluster} FINAL"
            )

    def close(self) -> None:
        """Release the engine."""
        self.backend.close()

    def __enter__(self) -> Store:
        """Context manager: the store itself."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Close on leaving the block."""
        self.close()


def _present(table: str, version: int) -> bool:
    """Whether `table` exists at schema `version` (the per-level pyramid lived from v2 to v3)."""
    if table == schema.SAMPLED.name:
        return version >= 4
    if table.startswith("samples_"):
        return 2 <= version <= 3
    return True


def open_store(
    data_dir: Path | None = None,
    url: str | None = None,
    retention_days: int = 30,
    *,
    database: str = "fleetprof",
    cluster: str | None = None,
    fsync: bool = False,
    schema_version: int | None = None,
) -> Store:
    """Open the embedded store under `data_dir` or a ClickHouse server at `url` (one of the two).

    `fsync=True` fsyncs every new part (power-loss safety, ~3x slower ingest on this disk); without it an
    acknowledged batch still survives kill -9 (written parts are in the page cache). Fixed at table creation.
    """
    if (data_dir is None) == (url is None):
        raise StoreError("give exactly one of a data directory (embedded) or a ClickHouse URL")
    try:
        layout = Layout(database, cluster, retention_days, fsync=bool(fsync))
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    backend: Backend = ChdbBackend(Path(data_dir)) if data_dir is not None else ServerBackend(str(url))
    try:
        return Store(backend, layout, schema_version)
    except BaseException:
        backend.close()
        raise
