"""The ClickHouse schema, one template rendered for a single node (embedded or server) or a cluster.

On a cluster each table becomes a `Replicated*MergeTree` `<name>_local` on every shard plus a `Distributed`
`<name>` over it, sharded by the stack hash so stacks and their samples stay on one shard. Queries and inserts
always name the plain table, so the rest of the code never knows which variant it runs on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Layout:
    """Where and how tables are created: database, optional cluster, retention, durability."""

    database: str = "fleetprof"
    cluster: str | None = None
    retention_days: int = 30
    fsync: bool = False  # fsync parts and their directories on insert (power-loss safety)

    def __post_init__(self) -> None:
        """Names are spliced into DDL, so only plain identifiers are accepted."""
        for name in (self.database, self.cluster or "x"):
            if not _IDENT.match(name):
                raise ValueError(f"invalid database or cluster name {name!r}")
        if not 1 <= self.retention_days <= 36500:
            raise ValueError(f"retention must be 1..36500 days, not {self.retention_days}")

    def table(self, name: str) -> str:
        """The name queries and inserts use: `db.name` (Distributed on a cluster)."""
        return f"{self.database}.{name}"

    def local(self, name: str) -> str:
        """The table that holds the data: `db.name_local` on a cluster, else `db.name`."""
        return f"{self.database}.{name}_local" if self.cluster else f"{self.database}.{name}"

    @property
    def on_cluster(self) -> str:
        """` ON CLUSTER c` for DDL on a cluster, else nothing."""
        return f" ON CLUSTER {self.cluster}" if self.cluster else ""


@dataclass(frozen=True)
class Table:
    """One table of the template: columns, engine family, keys, TTL column and shard key."""

    name: str
    columns: str
    engine: str  # MergeTree, ReplacingMergeTree(ver), SummingMergeTree(count)
    order_by: str
    partition_by: str = ""
    ttl_column: str = ""  # a Date/DateTime expression; rows expire `retention_days` after it
    ttl_slack_days: int = 0  # extra days before rows expire (stacks/frames outlive their samples)
    drop_parts: bool = True  # expire whole date partitions (ttl_only_drop_parts) rather than rows
    shard_key: str = "rand()"
    dedup: bool = False  # keep insert-deduplication hashes (retried batches are dropped)
    extra_settings: dict[str, str] = field(default_factory=dict)


def _engine(layout: Layout, table: Table) -> str:
    """`ENGINE = …` for the layout: plain or Replicated with the usual Keeper path and replica macros."""
    family, _, args = table.engine.partition("(")
    args = args.rstrip(")")
    if not layout.cluster:
        return f"{family}({args})"
    path = f"'/clickhouse/tables/{{shard}}/{layout.database}/{table.name}_local'"
    replica_args = ", ".join(a for a in (path, "'{replica}'", args) if a)
    return f"Replicated{family}({replica_args})"


def _settings(layout: Layout, table: Table) -> str:
    """Table SETTINGS: drop whole expired parts, dedup windows, fsync when asked."""
    settings: dict[str, str] = {}
    if table.ttl_column and table.drop_parts:
        settings["ttl_only_drop_parts"] = "1"
    if table.dedup and not layout.cluster:
        settings["non_replicated_deduplication_window"] = "10000"
    if layout.fsync:
        settings["fsync_after_insert"] = "1"
        settings["fsync_part_directory"] = "1"
    settings.update(table.extra_settings)
    return ", ".join(f"{k} = {v}" for k, v in settings.items())


def ttl_clause(layout: Layout, table: Table) -> str:
    """`<ttl column> + INTERVAL n DAY`, the expression MODIFY TTL and CREATE share."""
    return f"{table.ttl_column} + INTERVAL {int(layout.retention_days) + table.ttl_slack_days} DAY"


def create_table(layout: Layout, table: Table) -> list[str]:
    """DDL for one table: the data table, plus its Distributed front on a cluster."""
    parts = [f"CREATE TABLE IF NOT EXISTS {layout.local(table.name)}{layout.on_cluster} ({table.columns})"]
    parts.append(f"ENGINE = {_engine(layout, table)}")
    if table.partition_by:
        parts.append(f"PARTITION BY {table.partition_by}")
    parts.append(f"ORDER BY {table.order_by}")
    if table.ttl_column:
        parts.append(f"TTL {ttl_clause(layout, table)}")
    settings = _settings(layout, table)
    if settings:
        parts.append(f"SETTINGS {settings}")
    statements = ["\n".join(parts)]
    if layout.cluster:
        statements.append(
            f"CREATE TABLE IF NOT EXISTS {layout.table(table.name)}{layout.on_cluster} "
            f"AS {layout.local(table.name)} ENGINE = Distributed({layout.cluster}, {layout.database}, "
            f"{table.name}_local, {table.shard_key})"
        )
    return statements


def create_view(layout: Layout, name: str, target: str, select: str) -> list[str]:
    """A materialized view feeding `target` from each insert into its source (local tables on a cluster)."""
    return [
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {layout.local(name)}{layout.on_cluster} "
        f"TO {layout.local(target)} AS {select}"
    ]


SCHEMA_VERSION = Table(
    name="schema_version",
    columns="version UInt32, description String, applied_at DateTime DEFAULT now()",
    engine="ReplacingMergeTree(applied_at)",
    order_by="version",
    shard_key="version",
)
META = Table(
    name="meta",
    columns="key String, value String, updated_at DateTime64(3) DEFAULT now64(3)",
    engine="ReplacingMergeTree(updated_at)",
    order_by="key",
    shard_key="cityHash64(key)",
)
# The program's own labels of a sample (Go pprof labels): key -> value, empty for most samples.
LABELS_TYPE = "Map(LowCardinality(String), String)"
# One row per (host, process, thread, stack, second) and labels: a batch's samples are counted per second
# (`count`), so time keeps one-second resolution while repeated samples cost one row. Thread before stack
# in the sort key keeps the label columns nearly free (bench/bench_ingest.py measures the alternatives).
SAMPLES = Table(
    name="samples",
    columns=(
        "ts DateTime64(0, 'UTC') CODEC(DoubleDelta, ZSTD(1)), "
        "host LowCardinality(String), host_id LowCardinality(String), "
        "process LowCardinality(String), pid UInt32 CODEC(T64, ZSTD(1)), tid UInt32 CODEC(T64, ZSTD(1)), "
        "thread LowCardinality(String), container LowCardinality(String), pod_uid LowCardinality(String), "
        "executable LowCardinality(String), stack_id UInt64 CODEC(ZSTD(1)), "
        "count UInt32 CODEC(T64, ZSTD(1)), frequency UInt32 CODEC(T64, ZSTD(1)), "
        f"labels {LABELS_TYPE}"
    ),
    engine="MergeTree",
    partition_by="toDate(ts)",
    order_by="(toStartOfHour(ts), host, process, tid, stack_id, ts)",
    ttl_column="toDate(ts)",
    shard_key="stack_id",
    dedup=True,
)
# Stacks and frames: one row per id after merges (the latest `day` it was written wins). Ingest rewrites a
# row at most once a week per id, so `day` trails the last use by under a week: rows expire by row TTL a
# week after the samples that could reference them.
STACKS = Table(
    name="stacks",
    columns="stack_id UInt64, frame_ids Array(UInt64) CODEC(ZSTD(9)), day Date",
    engine="ReplacingMergeTree(day)",
    order_by="stack_id",
    ttl_column="day",
    ttl_slack_days=7,
    drop_parts=False,
    shard_key="stack_id",
)
FRAMES = Table(
    name="frames",
    columns=(
        "frame_id UInt64, kind UInt8, function String, file String, line UInt32, start_line UInt32, "
        "inlined UInt8, system_name String, file_id String, build_id String, module String, "
        "address UInt64, runtime LowCardinality(String), day Date"
    ),
    engine="ReplacingMergeTree(day)",
    order_by="frame_id",
    ttl_column="day",
    ttl_slack_days=7,
    drop_parts=False,
    shard_key="frame_id",
)
SYMBOLS = Table(
    name="symbols",
    columns=(
        "file_id String, address UInt64, functions Array(String), files Array(String), "
        "lines Array(UInt32), start_lines Array(UInt32), inlined Array(UInt8), system_names Array(String), "
        "updated_at DateTime64(3) DEFAULT now64(3)"
    ),
    engine="ReplacingMergeTree(updated_at)",
    order_by="(file_id, address)",
    shard_key="cityHash64(file_id, address)",
)
EXECUTABLES = Table(
    name="executables",
    columns="file_id String, build_id String, path String, last_seen DateTime DEFAULT now()",
    engine="ReplacingMergeTree(last_seen)",
    order_by="file_id",
    shard_key="cityHash64(file_id)",
)
SYMBOL_FILES = Table(
    name="symbol_files",
    columns=(
        "file_id String, data String CODEC(ZSTD(3)), size UInt64, uploaded_at DateTime64(3) DEFAULT now64(3)"
    ),
    engine="ReplacingMergeTree(uploaded_at)",
    order_by="file_id",
    shard_key="cityHash64(file_id)",
)
HOSTS = Table(
    name="hosts",
    columns=(
        "host_id String, host_name String, agent_version String, kernel String, os String, arch String, "
        "cpu_model String, cores UInt32, report_time DateTime64(3, 'UTC'), samples UInt64"
    ),
    engine="MergeTree",
    partition_by="toDate(report_time)",
    order_by="(host_name, host_id, report_time)",
    ttl_column="toDate(report_time)",
    shard_key="cityHash64(host_id)",
    dedup=True,
)
BATCHES = Table(
    name="batches",
    columns="batch_id String, samples UInt64, ingested_at DateTime DEFAULT now()",
    engine="ReplacingMergeTree",
    partition_by="toDate(ingested_at)",
    order_by="batch_id",
    ttl_column="toDate(ingested_at)",
    shard_key="cityHash64(batch_id)",
)
BASE_TABLES = (
    SCHEMA_VERSION,
    META,
    SAMPLES,
    STACKS,
    FRAMES,
    SYMBOLS,
    EXECUTABLES,
    SYMBOL_FILES,
    HOSTS,
    BATCHES,
)


# Long-range scheme (schema v2): Elastic-style random-sampling pyramid. Level k keeps each sample row with
# probability 1/5^k and stores its count multiplied by 5^k, so sums over any level estimate the raw sums.
PYRAMID_LEVELS = (5, 25, 125, 625)
# The samples columns before schema v5 (older migrations copy rows with these) and since.
SAMPLE_COLUMNS_V1 = (
    "ts, host, host_id, process, pid, tid, thread, container, pod_uid, executable, stack_id, count, frequency"
)
SAMPLE_COLUMNS = SAMPLE_COLUMNS_V1 + ", labels"


def pyramid_table(factor: int) -> Table:
    """The table of pyramid level `factor` (1/factor of the rows), shaped and expiring like samples."""
    return Table(
        name=f"samples_{factor}",
        columns=SAMPLES.columns,
        engine=SAMPLES.engine,
        partition_by=SAMPLES.partition_by,
        order_by=SAMPLES.order_by,
        ttl_column=SAMPLES.ttl_column,
        shard_key=SAMPLES.shard_key,
    )


def pyramid_select(layout: Layout, factor: int, columns: str = SAMPLE_COLUMNS) -> str:
    """Rows of the raw samples table sampled at 1/factor, counts scaled up by factor."""
    cols = columns.replace("count,", f"count * {int(factor)} AS count,")
    return f"SELECT {cols} FROM {layout.local('samples')} WHERE rand() % {int(factor)} = 0"


# Long-range scheme (schema v4): the same pyramid in one table, level k holding each sample row with
# probability 1/5^k (count scaled by 5^k, hence UInt64), fed by one materialized view: one extra part per
# insert instead of one per level, and levels enough for a 10,000-host fleet's month (5^12 = 244 M). No
# level 1: a range small enough for it (under 2.5 M rows) is summed from raw samples in about 0.1 s, and
# 1/5 of every row would be 20 % more storage; levels from 2 on add 1/25 + 1/125 + ... = 4.2 % of the rows.
SAMPLED_LEVELS = tuple(range(2, 13))
SAMPLED = Table(
    name="samples_sampled",
    columns=SAMPLES.columns.replace("count UInt32", "count UInt64") + ", level UInt8",
    engine="MergeTree",
    partition_by=SAMPLES.partition_by,
    order_by="(level, toStartOfHour(ts), host, process, tid, stack_id, ts)",
    ttl_column=SAMPLES.ttl_column,
    shard_key=SAMPLES.shard_key,
)


def sampled_select(layout: Layout, columns: str = SAMPLE_COLUMNS) -> str:
    """Rows of the raw samples table into every level of the sampled table (1/5^k each, counts x 5^k).

    Levels are nested: one random number per row puts it in every level k whose 5^k divides it, so a
    row reaches level k with probability 1/5^k and the 24 rows in 25 that reach none are dropped before
    any level is spelled out (expanding every row into all levels and then sampling cost 4x the time).
    """
    cols = columns.replace("count,", "toUInt64(count) * toUInt64(pow(5, level)) AS count,")
    levels = ", ".join(str(k) for k in SAMPLED_LEVELS)
    first = 5 ** SAMPLED_LEVELS[0]
    picked = f"SELECT {columns}, rand() AS r FROM {layout.local('samples')} WHERE r % {first} = 0"
    level = f"arrayFilter(k -> r % toUInt64(pow(5, k)) = 0, [{levels}])"
    return f"SELECT {cols}, level FROM ({picked}) ARRAY JOIN {level} AS level"
