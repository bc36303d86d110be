"""Query semantics on hand-made stacks: sandwich, diff, timeline groups, top functions' cost, group ingest."""

from __future__ import annotations

import time

import pytest

from fleetprof.output.folded import folded_counts
from fleetprof.profile.model import Frame, FrameKind, Profile, Sample
from fleetprof.query import (
    CostModel,
    QueryError,
    Selection,
    diff,
    export_profile,
    sandwich,
    timeline,
    top_functions,
)

NOW = time.time_ns() // 10**9 * 10**9


def _py(name: str) -> Frame:
    return Frame(FrameKind.PYTHON, name, file="/app.py", line=1)


def _profile(host: str, stacks: dict[tuple[str, ...], int], thread: str = "main") -> Profile:
    samples = [
        Sample(
            (Frame(FrameKind.PROCESS, "app"), *(_py(n) for n in names)),
            pid=1,
            tid=1,
            process_name="app",
            thread_name=thread,
            count=n,
            timestamps_ns=[NOW + i * 10**6 for i in range(n)],
        )
        for names, n in stacks.items()
    ]
    return Profile(samples, 20, NOW, 10**9, hostname=host)


@pytest.fixture(scope="module")
def loaded(store):
    written = store.ingest_many(
        [
            (
                _profile("q-base", {("main", "a", "hot"): 60, ("main", "b", "hot"): 20, ("main", "b"): 20}),
                "qb",
            ),
            (
                _profile(
                    "q-cmp", {("main", "a", "hot"): 20, ("main", "b", "hot"): 60, ("main", "c"): 20}, "w"
                ),
                "qc",
            ),
            (_profile("q-cmp", {("main",): 1}), "qb"),  # repeated batch id in one group: skipped
        ]
    )
    assert written == [100, 100, 0]
    return store


def sel(host: str) -> Selection:
    return Selection(NOW - 10**9, NOW + 10**9, {"host": [host]})


def _children(node):
    return {c["name"].split(" ")[0]: c for c in node["children"]}


def test_sandwich_callers_and_callees(loaded):
    sw = sandwich(loaded, sel("q-base"), "hot")
    assert (sw["self"], sw["total"]) == (80, 80)
    callers = _children(sw["callers"])
    assert {k: v["total"] for k, v in callers.items()} == {"a": 60, "b": 20}
    assert _children(callers["a"])["main"]["total"] == 60
    b = sandwich(loaded, sel("q-base"), "b")
    assert _children(b["callees"])["hot"]["total"] == 20 and b["self"] == 20


def test_diff_tree_top_and_summary(loaded):
    d = diff(loaded, sel("q-base"), sel("q-cmp"))
    assert d["summary"]["base_samples"] == d["summary"]["cmp_samples"] == 100
    main = _children(_children(d["tree"])["app"])["main"]
    kids = _children(main)
    assert (kids["a"]["base_total"], kids["a"]["cmp_total"]) == (60, 20)
    assert kids["c"]["base_total"] == 0 and kids["c"]["delta_pct"] == pytest.approx(20.0)
    top = {r["function"]: r for r in d["top"]}
    assert top["b"]["delta_self_pct"] == pytest.approx(-20.0)
    assert top["hot"]["delta_self_pct"] == pytest.approx(0.0)


def test_timeline_groups_and_bad_group(loaded):
    both = Selection(NOW - 10**9, NOW + 10**9, {"host": ["q-base", "q-cmp"]})
    t = timeline(loaded, both, "thread", step_s=1)
    assert {s["group"]: s["total"] for s in t["series"]} == {"main": 100, "w": 100}
    assert len(t["times_ns"]) == len(t["series"][0]["values"]) == 2
    with pytest.raises(QueryError):
        timeline(loaded, both, "host; DROP TABLE x")
    with pytest.raises(QueryError):
        top_functions(loaded, Selection(NOW, NOW - 1))
    with pytest.raises(QueryError):
        top_functions(loaded, Selection(NOW - 10**9, NOW, {"pid": ["1 OR 1"]}))


def test_top_functions_cost_follows_elastic_formula(loaded):
    cost = CostModel(watts_per_core=10, pue=2.0, co2_tons_per_kwh=0.001, cost_per_core_hour=3.6)
    hot = next(r for r in top_functions(loaded, sel("q-base"), cost) if r["function"] == "hot")
    assert hot["self"] == 80 and hot["self_pct"] == pytest.approx(80.0)
    core_s = 80 / 20
    assert hot["self_cpu_s"] == pytest.approx(core_s)
    assert hot["self_co2_kg"] == pytest.approx(core_s / 3600 * 10 / 1000 * 2.0 * 0.001 * 1000)
    assert hot["self_cost"] == pytest.approx(core_s / 3600 * 3.6)


def test_export_feeds_output_writers(loaded):
    exported = export_profile(loaded, sel("q-base"))
    folded = folded_counts(exported)
    assert sum(folded.values()) == 100
    assert any(line.endswith("hot (/app.py:1)") for line in folded)


def test_stack_cache_gives_the_same_answers_cold_and_warm(loaded):
    from fleetprof.query import flame_graph
    from fleetprof.query.stacks import stack_cache

    stack_cache(loaded).stacks.clear()
    cold = (flame_graph(loaded, sel("q-cmp")), top_functions(loaded, sel("q-cmp")))
    assert stack_cache(loaded).stacks
    warm = (flame_graph(loaded, sel("q-cmp")), top_functions(loaded, sel("q-cmp")))
    assert cold == warm
    tiny = type(stack_cache(loaded))(limit=1)  # a cache that forgets on every put still answers right
    from fleetprof.query import stacks as stacks_module

    stacks_module._caches[loaded] = tiny
    try:
        assert flame_graph(loaded, sel("q-cmp")) == cold[0]
    finally:
        stacks_module._caches.pop(loaded, None)


def test_a_stack_stored_twice_reads_as_one(loaded):
    """Stack rows written again (a restarted server's first batches, parts not merged yet) change no
    answer, cold or warm: a stack's frames are read once whatever its number of rows."""
    from fleetprof.query import flame_graph
    from fleetprof.query.stacks import stack_cache

    stack_cache(loaded).stacks.clear()
    before = (flame_graph(loaded, sel("q-cmp")), top_functions(loaded, sel("q-cmp")))
    stacks = loaded.t("stacks")
    loaded.backend.execute(f"SYSTEM STOP MERGES {stacks}")  # the copies stay until this test ends
    try:
        loaded.backend.execute(f"INSERT INTO {stacks} SELECT * FROM {stacks}")
        rows = loaded.query(f"SELECT count() AS n, uniqExact(stack_id) AS u FROM {stacks}").to_pylist()[0]
        assert rows["n"] >= 2 * rows["u"] > 0
        stack_cache(loaded).stacks.clear()
        assert (flame_graph(loaded, sel("q-cmp")), top_functions(loaded, sel("q-cmp"))) == before
        assert (flame_graph(loaded, sel("q-cmp")), top_functions(loaded, sel("q-cmp"))) == before
    finally:
        loaded.backend.execute(f"SYSTEM START MERGES {stacks}")


def test_flame_graph_node_budget_keeps_the_largest_nodes_connected(loaded):
    from fleetprof.query import flame_graph

    full = flame_graph(loaded, sel("q-base"), min_fraction=0, max_nodes=0)
    small = flame_graph(loaded, sel("q-base"), min_fraction=0, max_nodes=3)

    def walk(node):
        yield node
        for child in node["children"]:
            yield from walk(child)

    assert len(list(walk(small))) <= 4 < len(list(walk(full)))
    assert small["total"] == full["total"] == 100
    assert [c["name"] for c in small["children"]] == [c["name"] for c in full["children"]]


def test_program_labels_filter_group_and_export(store):
    """Go pprof labels stored per sample: a `label.KEY` filter, a timeline grouped by one, the keys and
    values suggested, and an export that gives them back."""
    from fleetprof.server.api import suggest

    def labelled(labels: tuple[tuple[str, str], ...], n: int) -> Sample:
        stack = (Frame(FrameKind.PROCESS, "svc"), _py("main"), _py("spin"))
        stamps = [NOW + i * 10**6 for i in range(n)]
        return Sample(stack, 7, 7, "svc", "svc", n, timestamps_ns=stamps, custom_labels=labels)

    samples = [
        labelled((("job", "resize"), ("tenant", "acme")), 30),
        labelled((("job", "thumb"), ("tenant", "acme")), 10),
        labelled((), 5),
    ]
    assert store.ingest(Profile(samples, 20, NOW, 10**9, hostname="q-labels"), "ql") == 45
    window = (NOW - 10**9, NOW + 10**9)

    def select(**filters: list[str]) -> Selection:
        return Selection(*window, {"host": ["q-labels"], **filters})

    resize = export_profile(store, select(**{"label.job": ["resize"]}))
    assert [(s.count, s.custom_labels) for s in resize.samples] == [
        (30, (("job", "resize"), ("tenant", "acme")))
    ]
    assert export_profile(store, select(**{"label.tenant": ["acme"]})).total == 40
    assert export_profile(store, select(**{"label.job": ["resize", "thumb"]})).total == 40
    assert export_profile(store, select(**{"label.job": ["x' OR 1=1 --"]})).total == 0
    series = timeline(store, select(), "label.job", step_s=1)["series"]
    assert {s["group"]: s["total"] for s in series} == {"resize": 30, "thumb": 10, "": 5}
    assert [r["value"] for r in suggest(store, "label", select(), "", 10)] == ["job", "tenant"]
    assert [r["value"] for r in suggest(store, "label.job", select(), "", 10)] == ["resize", "thumb"]
    with pytest.raises(QueryError, match="unknown filter"):
        export_profile(store, select(**{"label.": ["x"]}))
