"""Row building (store/rows.py) without an engine: stacks recognized by identity give the same rows and ids
as stacks hashed by content; rows already stored this week are not built again; objects that never recur
are not all remembered."""

from __future__ import annotations

import copy
import time

import pyarrow as pa

from fleetprof.profile.model import Profile, Sample
from fleetprof.store.rows import IdCache, Rows, build_group, frame_id, stack_id
from fleetprof.store.synthetic import StackPool, fleet_profile

START = 1_700_000_000 * 10**9
KEYS = {"samples": None, "stacks": "stack_id", "frames": "frame_id", "executables": "file_id", "host": None}


def _fleet(pool: StackPool, hosts: int = 4, rounds: int = 2) -> list[Profile]:
    return [
        fleet_profile(pool, f"h{h}", START + r * 5 * 10**9, 300, seed=r)
        for r in range(rounds)
        for h in range(hosts)
    ]


def _copied(profile: Profile) -> Profile:
    """`profile` with its own copy of every stack and frame object (nothing shared with any other)."""
    out = copy.copy(profile)
    out.samples = [
        Sample(**{**{f: getattr(s, f) for f in Sample.__slots__}, "stack": tuple(map(copy.copy, s.stack))})
        for s in profile.samples
    ]
    return out


def _same(a: Rows, b: Rows) -> None:
    for name, key in KEYS.items():
        x, y = getattr(a, name), getattr(b, name)
        if key:
            x, y = x.sort_by(key), y.sort_by(key)
        assert x.equals(y), name


def test_shared_and_copied_objects_give_the_same_rows():
    pool = StackPool.build(300, seed=3)
    shared = _fleet(pool)
    copied = [_copied(p) for p in shared]
    by_identity, by_content = IdCache(), IdCache()
    for i in (0, 4):  # the second group finds the shared objects by identity
        a = build_group(shared[i : i + 4], by_identity, 0)
        b = build_group(copied[i : i + 4], by_content, 0)
        _same(a, b)
        by_identity.commit(a)
        by_content.commit(b)
    assert by_identity.stack_objects  # identities were learnt


def test_stack_ids_are_content_hashes():
    pool = StackPool.build(100, seed=4)
    profiles = _fleet(pool, hosts=2, rounds=1)
    cache = IdCache()
    rows = build_group(profiles, cache, 0)
    expected = {stack_id([frame_id(f) for f in s.stack]) for p in profiles for s in p.samples}
    assert set(rows.samples.column("stack_id").to_pylist()) == expected
    stacks = rows.stacks.to_pylist()
    assert {r["stack_id"] for r in stacks} == expected
    for row in stacks:
        assert stack_id(row["frame_ids"]) == row["stack_id"]
    again = build_group(profiles, cache, 0)  # identity path, same answer
    assert again.samples.column("stack_id").equals(rows.samples.column("stack_id"))


def test_committed_stacks_and_frames_are_not_built_again_that_week():
    pool = StackPool.build(100, seed=5)
    profiles = _fleet(pool, hosts=2, rounds=1)
    cache = IdCache()
    first = build_group(profiles, cache, 0)
    assert first.stacks.num_rows and first.frames.num_rows and first.executables.num_rows
    cache.commit(first)
    same_week = build_group(profiles, cache, 0)
    assert (same_week.stacks.num_rows, same_week.frames.num_rows, same_week.executables.num_rows) == (0, 0, 0)
    assert same_week.samples.equals(first.samples)
    later = [copy.copy(p) for p in profiles]
    for p in later:
        p.samples = [copy.copy(s) for s in p.samples]
        for s in p.samples:
            s.timestamps_ns = [t + 8 * 86_400 * 10**9 for t in s.timestamps_ns]
    next_week = build_group(later, cache, 0)
    assert next_week.week == first.week + 1
    assert next_week.stacks.column("stack_id").sort().equals(first.stacks.column("stack_id").sort())


def test_objects_that_never_recur_are_mostly_not_remembered():
    pool = StackPool.build(200, seed=6)
    cache = IdCache()
    for r in range(8):
        group = [_copied(fleet_profile(pool, "h", START + r * 5 * 10**9, 200, seed=r))]
        cache.commit(build_group(group, cache, 0))
    first_group = len(
        build_group([_copied(fleet_profile(pool, "h", START, 200, seed=0))], IdCache(), 0).stacks
    )
    assert len(cache.stack_objects) <= 2 * first_group  # the first group, not all eight


def test_empty_group():
    rows = build_group([Profile([], 20, START, 10**9, hostname="idle")], IdCache(), int(time.time() * 1000))
    assert rows.samples.num_rows == 0 and rows.stacks.num_rows == 0
    assert rows.host.num_rows == 1 and rows.sample_counts == [0]
    assert isinstance(rows.samples, pa.Table)


def _plain(table: pa.Table) -> pa.Table:
    """`table` with dictionary-encoded columns as plain values (dictionaries may list values in any order)."""
    return pa.table(
        {
            name: col.cast(col.type.value_type) if pa.types.is_dictionary(col.type) else col
            for name, col in zip(table.column_names, table.columns, strict=True)
        }
    )


def test_columns_give_the_rows_their_profiles_give():
    """Decoded columns (fleetprof.wire.otlp_columns) and the same profiles as objects: equal rows."""
    from fleetprof.output.otlp import to_otlp_request
    from fleetprof.wire.otlp_columns import columns_from_bytes

    requests = [to_otlp_request(p).SerializeToString() for p in _fleet(StackPool.build(300, seed=6))]
    columns = [c for r in requests for c in columns_from_bytes(r) or []]
    assert len(columns) == len(requests)
    as_columns, as_objects = IdCache(), IdCache()
    for i in (0, 4):
        a = build_group(columns[i : i + 4], as_columns, 0)
        b = build_group([c.to_profile() for c in columns[i : i + 4]], as_objects, 0)
        for name, key in KEYS.items():
            x, y = _plain(getattr(a, name)), _plain(getattr(b, name))
            if key:
                x, y = x.sort_by(key), y.sort_by(key)
            assert x.equals(y), name
        assert (a.sample_count, a.sample_counts, a.week) == (b.sample_count, b.sample_counts, b.week)
        as_columns.commit(a)
        as_objects.commit(b)
