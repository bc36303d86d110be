"""Sandwich view of one function: who calls it (callers, inverted) and what it calls (callees)."""

from __future__ import annotations

from typing import Any

from fleetprof.query.flame import paths_tree
from fleetprof.query.selection import Selection
from fleetprof.query.stacks import NodeKey, StackSet


def sandwich_of(stacks: StackSet, function: str) -> dict[str, Any]:
    """Callers and callees trees of `function` over loaded stacks (its outermost occurrence per stack)."""
    callers: list[tuple[list[int], int]] = []
    callees: list[tuple[list[int], int]] = []
    self_count = total = 0
    for keys, count in zip(stacks.stacks, stacks.counts.tolist(), strict=True):
        at = next((i for i, k in enumerate(keys) if stacks.keys[k].function == function), -1)
        if at < 0:
            continue
        total += count
        if stacks.keys[keys[-1]].function == function:
            self_count += count
        callers.append((keys[at::-1][1:], count))
        callees.append((keys[at + 1 :], count))
    fn_key = NodeKey(function, "function", function)
    caller_tree = paths_tree(callers, stacks.keys, fn_key)
    callee_tree = paths_tree(callees, stacks.keys, fn_key)
    return {
        "function": function,
        "self": self_count,
        "total": total,
        "total_samples": stacks.total,
        "callers": caller_tree,
        "callees": callee_tree,
    }


def sandwich(store: Any, sel: Selection, function: str, long_range: bool = True) -> dict[str, Any]:
    """Sandwich of `function` over the stacks of `sel` that contain it."""
    from fleetprof.query.longrange import load_for_range

    narrowed = Selection(sel.start_ns, sel.end_ns, sel.filters, function)
    return sandwich_of(load_for_range(store, narrowed, long_range), function)
