"""Versioned schema: numbered migrations applied in order, recorded in `schema_version`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from fleetprof.store import schema
from fleetprof.store.backend import Backend
from fleetprof.store.schema import Layout


@dataclass(frozen=True)
class Migration:
    """One schema step: its number, what it does, and the statements it runs for a layout."""

    version: int
    description: str
    statements: Callable[[Layout], list[str]]
    backfill: Callable[[Layout], list[str]] | None = None  # run only when upgrading existing data
    superseded_by: int = 0  # a fresh store migrating at least this far skips this step's statements


def _v1(layout: Layout) -> list[str]:
    """Base tables: samples, stacks, frames, symbols, executables, symbol files, hosts, batches, meta."""
    out: list[str] = []
    for table in schema.BASE_TABLES:
        if table is not schema.SCHEMA_VERSION:
            out += schema.create_table(layout, table)
    return out


def _v2(layout: Layout) -> list[str]:
    """The 5^k random-sampling pyramid for long ranges, fed by materialized views from samples."""
    out: list[str] = []
    for factor in schema.PYRAMID_LEVELS:
        out += schema.create_table(layout, schema.pyramid_table(factor))
        out += schema.create_view(
            layout,
            f"samples_{factor}_mv",
            f"samples_{factor}",
            schema.pyramid_select(layout, factor, schema.SAMPLE_COLUMNS_V1),
        )
    return out


def _v2_backfill(layout: Layout) -> list[str]:
    """Sample the samples stored before v2 into every pyramid level."""
    return [
        f"INSERT INTO {layout.local(f'samples_{factor}')} ({schema.SAMPLE_COLUMNS_V1}) "
        f"{schema.pyramid_select(layout, factor, schema.SAMPLE_COLUMNS_V1)}"
        for factor in schema.PYRAMID_LEVELS
    ]


def _v3(layout: Layout) -> list[str]:
    """Samples at one-second resolution, thread before stack in the key: new stores have it from v1."""
    return []


def _v3_rebuild(layout: Layout) -> list[str]:
    """Rebuild an older store's samples table in the v3 shape, counting its rows per second (single node;
    a cluster keeps its table, which the code still reads and writes, until it is recreated)."""
    if layout.cluster:
        return []
    new = replace(schema.SAMPLES, name="samples_v3")
    cols = schema.SAMPLE_COLUMNS_V1
    views = [f"samples_{factor}_mv" for factor in schema.PYRAMID_LEVELS]
    out = [f"DROP TABLE IF EXISTS {layout.local('samples_v3')}", *schema.create_table(layout, new)]
    out.append(
        f"INSERT INTO {layout.local('samples_v3')} ({cols}) SELECT toStartOfSecond(ts) AS sec, host, "
        "any(host_id), process, pid, tid, thread, container, pod_uid, executable, stack_id, sum(count), "
        f"any(frequency) FROM {layout.local('samples')} "
        "GROUP BY sec, host, process, pid, tid, thread, container, pod_uid, executable, stack_id"
    )
    out += [f"DROP VIEW IF EXISTS {layout.local(v)}" for v in views]
    out.append(f"EXCHANGE TABLES {layout.local('samples')} AND {layout.local('samples_v3')}")
    out.append(f"DROP TABLE {layout.local('samples_v3')}")
    for factor in schema.PYRAMID_LEVELS:
        out += schema.create_view(
            layout,
            f"samples_{factor}_mv",
            f"samples_{factor}",
            schema.pyramid_select(layout, factor, schema.SAMPLE_COLUMNS_V1),
        )
    return out


def _v4(layout: Layout) -> list[str]:
    """One sampled table (levels 5^1..5^8) with one view replaces the per-level pyramid tables; stacks'
    frame ids compressed harder (written once a week per stack, read through a cache)."""
    out = schema.create_table(layout, schema.SAMPLED)
    select = schema.sampled_select(layout, schema.SAMPLE_COLUMNS_V1)
    out += schema.create_view(layout, "samples_sampled_mv", "samples_sampled", select)
    for factor in schema.PYRAMID_LEVELS:
        out.append(f"DROP VIEW IF EXISTS {layout.local(f'samples_{factor}_mv')}{layout.on_cluster}")
        out.append(f"DROP TABLE IF EXISTS {layout.local(f'samples_{factor}')}{layout.on_cluster}")
        if layout.cluster:
            out.append(f"DROP TABLE IF EXISTS {layout.table(f'samples_{factor}')}{layout.on_cluster}")
    out.append(
        f"ALTER TABLE {layout.local('stacks')}{layout.on_cluster} MODIFY COLUMN frame_ids Array(UInt64) "
        "CODEC(ZSTD(9))"
    )
    return out


def _v4_backfill(layout: Layout) -> list[str]:
    """Sample the samples stored before v4 into every level."""
    select = schema.sampled_select(layout, schema.SAMPLE_COLUMNS_V1)
    return [f"INSERT INTO {layout.local('samples_sampled')} ({schema.SAMPLE_COLUMNS_V1}, level) {select}"]


def _v5(layout: Layout) -> list[str]:
    """The program's own labels (Go pprof labels) on samples and their sampled copies; the sampled
    table's view carries them."""
    out = []
    for name in ("samples", "samples_sampled"):
        tables = [layout.local(name)] + ([layout.table(name)] if layout.cluster else [])
        out += [
            f"ALTER TABLE {table}{layout.on_cluster} ADD COLUMN IF NOT EXISTS labels {schema.LABELS_TYPE}"
            for table in tables
        ]
    return out + _replace_sampled_view(layout)


def _v6(layout: Layout) -> list[str]:
    """The sampled table's view picks a row's levels from one random number (nested levels), dropping
    the rows that reach none before expanding the rest: a quarter of the insert time it took."""
    return _replace_sampled_view(layout)


def _replace_sampled_view(layout: Layout) -> list[str]:
    """The sampled table's view dropped and made again with today's select."""
    out = [f"DROP VIEW IF EXISTS {layout.local('samples_sampled_mv')}{layout.on_cluster}"]
    return out + schema.create_view(
        layout, "samples_sampled_mv", "samples_sampled", schema.sampled_select(layout)
    )


MIGRATIONS: list[Migration] = [
    Migration(1, "base tables", _v1),
    Migration(2, "random-sampling pyramid for long ranges", _v2, _v2_backfill, superseded_by=4),
    Migration(3, "samples counted per second, thread before stack in the key", _v3, _v3_rebuild),
    Migration(4, "one sampled table for long ranges, stacks compressed harder", _v4, _v4_backfill),
    Migration(5, "program labels (Go pprof labels) on samples", _v5),
    Migration(6, "sampled levels nested, picked from one random number per row", _v6),
]


def latest_version() -> int:
    """The version a fresh store ends at."""
    return MIGRATIONS[-1].version


def current_version(backend: Backend, layout: Layout) -> int:
    """The highest version applied to `layout.database` (0 for an empty database)."""
    table = backend.query(f"SELECT max(version) AS v FROM {layout.table('schema_version')}")
    value = table.column("v")[0].as_py() if table.num_rows else 0
    return int(value or 0)


def migrate(backend: Backend, layout: Layout, target: int | None = None) -> int:
    """Create the database and apply every migration above the current version up to `target`."""
    backend.execute(f"CREATE DATABASE IF NOT EXISTS {layout.database}{layout.on_cluster}")
    for statement in schema.create_table(layout, schema.SCHEMA_VERSION):
        backend.execute(statement)
    current = current_version(backend, layout)
    existing = current > 0  # backfills only run on stores that held data before this upgrade
    target = latest_version() if target is None else target
    for migration in MIGRATIONS:
        if current < migration.version <= target:
            skip = not existing and migration.superseded_by and target >= migration.superseded_by
            for statement in [] if skip else migration.statements(layout):
                backend.execute(statement)
            if existing and migration.backfill is not None:
                for statement in migration.backfill(layout):
                    backend.execute(statement)
            backend.execute(
                f"INSERT INTO {layout.table('schema_version')} (version, description) "
                "SELECT {v:UInt32}, {d:String}",
                {"v": migration.version, "d": migration.description},
            )
            current = migration.version
    return current
