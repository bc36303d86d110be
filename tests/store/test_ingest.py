"""Ingest: dedup by hash, idempotent batches, hosts, symbols arriving later, hostile filter values."""

from __future__ import annotations

import time

from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.query import Selection, export_profile, flame_graph, top_functions
from fleetprof.store.synthetic import fleet_profile

NOW = time.time_ns() // 10**9 * 10**9


def _count(store, where="1", params=None) -> int:
    t = store.query(f"SELECT sum(count) AS n FROM {store.t('samples')} WHERE {where}", params or {})
    return int(t.column("n")[0].as_py() or 0)


def test_ingest_counts_and_batch_idempotence(open_db, pool):
    store = open_db()
    profile = fleet_profile(pool, "idem", NOW, 2000)
    assert store.ingest(profile, "batch-1") == 2000
    assert store.ingest(profile, "batch-1") == 0
    assert _count(store) == 2000
    again = open_db(store.layout.database)  # a new Store (restart) still knows the batch
    assert again.ingest(profile, "batch-1") == 0
    assert _count(store) == 2000


def test_stacks_and_frames_deduplicated(open_db, pool):
    store = open_db()
    for i in range(3):
        store.ingest(fleet_profile(pool, f"d{i}", NOW, 3000, seed=i), f"dd{i}")
    store.backend.execute(f"OPTIMIZE TABLE {store.t('stacks')} FINAL")
    store.backend.execute(f"OPTIMIZE TABLE {store.t('frames')} FINAL")
    t = store.query(
        f"SELECT count() AS rows, uniqExact(stack_id) AS ids FROM {store.t('stacks')}"
    ).to_pylist()[0]
    assert t["rows"] == t["ids"] <= 3000
    f = store.query(
        f"SELECT count() AS rows, uniqExact(frame_id) AS ids FROM {store.t('frames')}"
    ).to_pylist()[0]
    assert f["rows"] == f["ids"]


def test_hosts_report_identity_and_samples(store, pool):
    store.ingest(fleet_profile(pool, "hostA", NOW, 100), "h-a1")
    store.ingest(fleet_profile(pool, "hostA", NOW + 5 * 10**9, 50), "h-a2")
    hosts = {h["host_name"]: h for h in store.hosts()}
    assert hosts["hostA"]["samples"] == 150
    assert hosts["hostA"]["host_id"] == "id-hostA"
    assert hosts["hostA"]["cores"] == 8
    assert hosts["hostA"]["last_report_ns"] > 0


def _raw_profile(host: str) -> Profile:
    lib = Mapping(file_id="f" * 32, path="/usr/lib/libdemo.so", build_id="be" * 20)
    stack = (
        Frame(FrameKind.PROCESS, "demo"),
        Frame(FrameKind.NATIVE, "", mapping=lib, address=0x1234),
        Frame(FrameKind.NATIVE, "", mapping=lib, address=0x5678),
    )
    sample = Sample(stack, pid=7, tid=7, process_name="demo", thread_name="demo", count=3,
                    timestamps_ns=[NOW, NOW + 1, NOW + 2])  # fmt: skip
    return Profile([sample], 20, NOW, 10**9, hostname=host)


def test_symbols_arriving_later_apply_to_old_samples(store):
    store.ingest(_raw_profile("symhost"), "sym-1")
    sel = Selection(NOW - 10**9, NOW + 10**9, {"host": ["symhost"]})
    missing = {(f, a) for f, _, a in store.missing_symbols(1000) if f == "f" * 32}
    assert missing == {("f" * 32, 0x1234), ("f" * 32, 0x5678)}
    names = [r["function"] for r in top_functions(store, sel)]
    assert "libdemo.so+0x5678" in names
    lib = Mapping(file_id="f" * 32, path="/usr/lib/libdemo.so")
    store.put_symbols(
        [
            ("f" * 32, 0x1234, (Frame(FrameKind.NATIVE, "main", "m.c", 3, lib, 0x1234),)),
            (
                "f" * 32,
                0x5678,
                (
                    Frame(FrameKind.NATIVE, "outer", "o.c", 10, lib, 0x5678),
                    Frame(FrameKind.NATIVE, "inlined_leaf", "o.c", 12, lib, 0x5678, inlined=True),
                ),
            ),
        ]
    )
    assert not [m for m in store.missing_symbols(1000) if m[0] == "f" * 32]
    top = {r["function"]: r for r in top_functions(store, sel)}
    assert top["inlined_leaf"]["self"] == 3 and top["main"]["total"] == 3
    tree = flame_graph(store, sel)
    path = []
    node = tree
    while node["children"]:
        node = node["children"][0]
        path.append(node["name"])
    assert path == ["demo", "main [libdemo.so]", "outer [libdemo.so]", "inlined_leaf [libdemo.so]"]
    exported = export_profile(store, sel)
    assert exported.total == 3
    assert [f.function for f in exported.samples[0].stack] == ["demo", "main", "outer", "inlined_leaf"]
    assert exported.samples[0].stack[-1].inlined


def test_symbol_files(store):
    assert not store.has_symbol_file("0" * 32)
    assert store.get_symbol_file("0" * 32) is None
    blob = bytes(range(256)) * 10
    store.put_symbol_file("0" * 32, blob)
    assert store.has_symbol_file("0" * 32)
    assert store.get_symbol_file("0" * 32) == blob


HOSTILE = [
    "'; DROP TABLE samples; --",
    "x' OR '1'='1",
    "\\'",
    "a\tb\nc\\",
    "{start:Int64}",
    "]) OR 1=1 --",
    "ü☃\0",
]


def test_hostile_filter_values_are_only_data(store, pool):
    store.ingest(fleet_profile(pool, "plain", NOW, 100), "hostile-plain")
    for value in HOSTILE:
        profile = fleet_profile(pool, value, NOW, 10, seed=1)
        store.ingest(profile, f"hostile-{value}")
    window = (NOW - 10**10, NOW + 10**10)
    for value in HOSTILE:
        for key in ("host", "process", "thread", "container", "executable"):
            sel = Selection(*window, {key: [value]})
            tree = flame_graph(store, sel)
            assert tree["total"] == (10 if key == "host" else 0), (key, value)
        assert flame_graph(store, Selection(*window, {}, value))["total"] == 0
    assert _count(store, "host = {h:String}", {"h": "plain"}) == 100
