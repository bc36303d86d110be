"""Differential flame graph and top functions between a baseline and a comparison selection."""

from __future__ import annotations

from typing import Any

from fleetprof.query.cost import CostModel
from fleetprof.query.flame import tree_of
from fleetprof.query.selection import Selection
from fleetprof.query.stacks import StackSet
from fleetprof.query.top import top_of


def _merge(base: dict[str, Any] | None, cmp: dict[str, Any] | None, btot: int, ctot: int) -> dict[str, Any]:
    """One diff node from the same-named nodes of both trees: totals and the change of its share."""
    either = base or cmp
    assert either is not None
    children: dict[str, list[dict[str, Any] | None]] = {}
    for child in base["children"] if base else []:
        children.setdefault(child["name"], [None, None])[0] = child
    for child in cmp["children"] if cmp else []:
        children.setdefault(child["name"], [None, None])[1] = child
    nodes = [_merge(b, c, btot, ctot) for b, c in children.values()]
    nodes.sort(key=lambda n: -max(n["base_total"], n["cmp_total"]))
    b_total, c_total = (base["total"] if base else 0), (cmp["total"] if cmp else 0)
    return {
        "name": either["name"],
        "kind": either["kind"],
        "module": either["module"],
        "file": either["file"],
        "line": either["line"],
        "base_total": b_total,
        "cmp_total": c_total,
        "base_self": base["self"] if base else 0,
        "cmp_self": cmp["self"] if cmp else 0,
        "delta_pct": 100.0 * (c_total / max(ctot, 1) - b_total / max(btot, 1)),
        "children": nodes,
    }


def diff_of(
    base: StackSet,
    cmp: StackSet,
    base_s: float,
    cmp_s: float,
    cost: CostModel | None = None,
    limit: int = 100,
    min_fraction: float = 1e-4,
) -> dict[str, Any]:
    """Diff tree, functions whose self share moved most, and a summary of both sides."""
    tree = _merge(tree_of(base, min_fraction), tree_of(cmp, min_fraction), base.total, cmp.total)
    top_b = {(r["function"], r["module"], r["file"]): r for r in top_of(base, base_s, cost, limit=10**9)}
    top_c = {(r["function"], r["module"], r["file"]): r for r in top_of(cmp, cmp_s, cost, limit=10**9)}
    deltas = []
    for key in top_b.keys() | top_c.keys():
        b, c = top_b.get(key), top_c.get(key)
        deltas.append(
            {
                "function": key[0],
                "module": key[1],
                "file": key[2],
                "base_self": b["self"] if b else 0,
                "cmp_self": c["self"] if c else 0,
                "base_self_pct": b["self_pct"] if b else 0.0,
                "cmp_self_pct": c["self_pct"] if c else 0.0,
                "delta_self_pct": (c["self_pct"] if c else 0.0) - (b["self_pct"] if b else 0.0),
                "delta_total_pct": (c["total_pct"] if c else 0.0) - (b["total_pct"] if b else 0.0),
            }
        )
    deltas.sort(key=lambda r: (-abs(r["delta_self_pct"]), r["function"]))
    change = 100.0 * (cmp.cpu_seconds - base.cpu_seconds) / base.cpu_seconds if base.cpu_seconds else None
    return {
        "tree": tree,
        "top": deltas[:limit],
        "summary": {
            "base_samples": base.total,
            "cmp_samples": cmp.total,
            "base_cpu_s": base.cpu_seconds,
            "cmp_cpu_s": cmp.cpu_seconds,
            "cpu_change_pct": change,
        },
    }


def diff(
    store: Any,
    base_sel: Selection,
    cmp_sel: Selection,
    cost: CostModel | None = None,
    long_range: bool = True,
) -> dict[str, Any]:
    """Differential flame graph + top function deltas + summary between two selections."""
    from fleetprof.query.longrange import load_for_range

    base = load_for_range(store, base_sel, long_range)
    cmp = load_for_range(store, cmp_sel, long_range)
    return diff_of(
        base,
        cmp,
        (base_sel.end_ns - base_sel.start_ns) / 1e9,
        (cmp_sel.end_ns - cmp_sel.start_ns) / 1e9,
        cost,
    )
