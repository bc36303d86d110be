"""Schema: cluster DDL rendering, migrations from v1, retention that really drops expired partitions."""

from __future__ import annotations

import time

from fleetprof.store.migrations import MIGRATIONS, latest_version
from fleetprof.store.schema import Layout
from fleetprof.store.synthetic import fleet_profile

NOW = time.time_ns() // 10**9 * 10**9
DAY = 86_400 * 10**9


def _all_ddl(layout: Layout) -> str:
    return "\n".join(s for m in MIGRATIONS for s in m.statements(layout))


def test_cluster_ddl_is_replicated_and_sharded_by_stack():
    ddl = _all_ddl(Layout("fp", cluster="fleet", fsync=False))
    assert "ON CLUSTER fleet" in ddl
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/fp/samples_local', '{replica}')" in ddl
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/fp/stacks_local', '{replica}', day)" in ddl
    )
    assert "ENGINE = Distributed(fleet, fp, samples_local, stack_id)" in ddl
    assert "ENGINE = Distributed(fleet, fp, stacks_local, stack_id)" in ddl
    assert "TO fp.samples_sampled_local AS SELECT" in ddl
    assert "FROM fp.samples_local WHERE r % 25 = 0) ARRAY JOIN" in ddl
    assert "DROP TABLE IF EXISTS fp.samples_5_local ON CLUSTER fleet" in ddl
    assert "ttl_only_drop_parts = 1" in ddl
    single = _all_ddl(Layout("fp", fsync=True))
    assert "Replicated" not in single and "Distributed" not in single and "_local" not in single
    assert "fsync_after_insert = 1" in single


def test_layout_rejects_bad_names():
    import pytest

    for bad in ("a-b", "x; DROP", "", "1abc"):
        with pytest.raises(ValueError):
            Layout(bad)


def _level_is_a_scaled_subset(db, level: int) -> int:
    """Rows of a sampled level, after checking each is a raw row with its count times 5^level (the sums
    are random estimates; this is what must hold exactly)."""
    t = db.t
    got = db.query(
        f"SELECT count() AS n, countIf(s.count != r.c * {5**level}) AS bad FROM {t('samples_sampled')} AS s "
        f"LEFT JOIN (SELECT ts, tid, stack_id, sum(count) AS c FROM {t('samples')} "
        f"GROUP BY ts, tid, stack_id) AS r USING (ts, tid, stack_id) WHERE s.level = {level}"
    )
    assert got.column("bad")[0].as_py() == 0
    return got.column("n")[0].as_py()


def test_migrating_from_v1_keeps_data_and_backfills(open_db, pool):
    old = open_db(schema_version=1)
    assert old.version == 1
    old.ingest(fleet_profile(pool, "mig", NOW, 20_000), "mig-1")
    old.backend.execute(f"ALTER TABLE {old.t('samples')} DROP COLUMN labels")  # as before v5
    new = open_db(old.layout.database)
    assert new.version == latest_version() == 6
    columns = new.query(
        "SELECT table FROM system.columns WHERE database = {d:String} AND name = 'labels' "
        "AND table NOT LIKE '%_mv' ORDER BY table",
        {"d": new.layout.database},
    )
    assert columns.column("table").to_pylist() == ["samples", "samples_sampled"]
    raw = new.query(f"SELECT sum(count) AS n FROM {new.t('samples')}").column("n")[0].as_py()
    assert raw == 20_000
    sampled = (
        new.query(f"SELECT sum(count) AS n FROM {new.t('samples_sampled')} WHERE level = 2")
        .column("n")[0]
        .as_py()
    )
    assert sampled > 0 and sampled % 25 == 0 and _level_is_a_scaled_subset(new, 2) > 0
    new.ingest(fleet_profile(pool, "mig", NOW + 60 * 10**9, 20_000, seed=1), "mig-2")  # views still feed
    sampled = (
        new.query(f"SELECT sum(count) AS n FROM {new.t('samples_sampled')} WHERE level = 2")
        .column("n")[0]
        .as_py()
    )
    assert sampled > 0 and sampled % 25 == 0 and _level_is_a_scaled_subset(new, 2) > 0
    versions = new.query(f"SELECT version FROM {new.t('schema_version')} ORDER BY version")
    assert versions.column("version").to_pylist() == [1, 2, 3, 4, 5, 6]


def test_sampled_levels_are_nested_and_sized_one_in_five_to_the_k(open_db, pool):
    store = open_db()
    store.ingest(fleet_profile(pool, "lvl", NOW, 200_000), "lvl-1")
    t = store.t
    rows = store.query(f"SELECT count() AS n FROM {t('samples')}").column("n")[0].as_py()
    levels = store.query(f"SELECT level, count() AS n FROM {t('samples_sampled')} GROUP BY level")
    per_level = {r["level"]: r["n"] for r in levels.to_pylist()}
    expected = rows / 25
    assert abs(per_level[2] - expected) < 5 * (expected * (1 - 1 / 25)) ** 0.5, (rows, per_level)
    assert per_level.get(3, 0) < per_level[2]
    for level in (2, 3):
        _level_is_a_scaled_subset(store, level)
    orphans = store.query(
        f"SELECT count() AS n FROM {t('samples_sampled')} AS s LEFT ANTI JOIN "
        f"(SELECT ts, tid, stack_id, level + 1 AS level FROM {t('samples_sampled')}) AS up "
        "USING (ts, tid, stack_id, level) WHERE s.level > 2"
    )
    assert orphans.column("n")[0].as_py() == 0  # every row of level k > 2 is in level k - 1 too


def test_retention_drops_expired_partitions(open_db, pool):
    store = open_db(retention_days=365)
    store.ingest(fleet_profile(pool, "ret", NOW - 40 * DAY, 500), "old")
    store.ingest(fleet_profile(pool, "ret", NOW, 300), "new")

    def total(table: str) -> int:
        return int(store.query(f"SELECT sum(count) AS n FROM {store.t(table)}").column("n")[0].as_py() or 0)

    assert total("samples") == 800
    shorter = open_db(store.layout.database, retention_days=30)  # reopening applies the new retention
    shorter.optimize()
    assert total("samples") == 300
    parts = store.query(
        "SELECT min(partition) AS p FROM system.parts WHERE database = {d:String} AND table = 'samples' "
        "AND active AND rows > 0",
        {"d": store.layout.database},
    )
    assert parts.column("p")[0].as_py() >= time.strftime("%Y-%m-%d", time.gmtime((NOW - 31 * DAY) / 1e9))
