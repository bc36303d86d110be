"""Differential flame graph and top functions between a baseline and a comparison selection."""

from __future__ import annotations

from typing import Any

from fleetprof.query.cost import CostModel
from fleetprof.query.flame import Trie, build_trie
from fleetprof.query.selection import Selection
from fleetprof.query.stacks import NodeKey, StackSet
from fleetprof.query.top import top_of


def _merge(base: Trie | None, cmp: Trie | None, key: NodeKey, btot: int, ctot: int, keys_b: list[NodeKey],
           keys_c: list[NodeKey]) -> dict[str, Any]:  # fmt: skip
    """One diff node: totals on both sides and the change of its share of all samples."""
    b_total, b_self = (base[0], base[1]) if base else (0, 0)
    c_total, c_self = (cmp[0], cmp[1]) if cmp else (0, 0)
    children: dict[NodeKey, list[Trie | None]] = {}
    for k, t in (base[2] if base else {}).items():
        children.setdefault(keys_b[k], [None, None])[0] = t
    for k, t in (cmp[2] if cmp else {}).items():
        children.setdefault(keys_c[k], [None, None])[1] = t
    nodes = [_merge(b, c, k, btot, ctot, keys_b, keys_c) for k, (b, c) in children.items()]
    nodes.sort(key=lambda n: -max(n["base_total"], n["cmp_total"]))
    return {
        "name": key.name,
        "kind": key.kind,
        "module": key.module,
        "file": key.file,
        "line": key.line,
        "base_total": b_total,
        "cmp_total": c_total,
        "base_self": b_self,
        "cmp_self": c_self,
        "delta_pct": 100.0 * (c_total / max(ctot, 1) - b_total / max(btot, 1)),
        "children": nodes,
    }


def diff_of(base: StackSet, cmp: StackSet, base_s: float, cmp_s: float, cost: CostModel | None = None,
            limit: int = 100) -> dict[str, Any]:  # fmt: skip
    """Diff tree, functions whose self share moved most, and a summary of both sides."""
    tree = _merge(
        build_trie(zip(base.stacks, base.counts, strict=True)),
        build_trie(zip(cmp.stacks, cmp.counts, strict=True)),
        NodeKey("root", "root", "root"),
        base.total,
        cmp.total,
        base.keys,
        cmp.keys,
    )
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
    return {
        "tree": tree,
        "top": deltas[:limit],
        "summary": {
            "base_samples": base.total,
            "cmp_samples": cmp.total,
            "base_cpu_s": base.cpu_seconds,
            "cmp_cpu_s": cmp.cpu_seconds,
            "cpu_change_pct": 100.0 * (cmp.cpu_seconds - base.cpu_seconds) / base.cpu_seconds
            if base.cpu_seconds
            else None,
        },
    }


def diff(store: Any, base_sel: Selection, cmp_sel: Selection, cost: CostModel | None = None,
         long_range: bool = True) -> dict[str, Any]:  # fmt: skip
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
