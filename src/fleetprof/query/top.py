"""Top functions: self and total samples, shares, CPU time, CO2 and cost per function."""

from __future__ import annotations

from typing import Any

import numpy as np

from fleetprof.query.cost import CostModel
from fleetprof.query.selection import Selection
from fleetprof.query.stacks import StackSet, sorted_unique


def function_counts(stacks: StackSet) -> tuple[list[int], list[int]]:
    """(self, total) samples per function index; a function counts once per stack for its total."""
    n = len(stacks.functions)
    if not len(stacks.counts) or not n:
        return [0] * n, [0] * n
    func_of = np.asarray(stacks.func_of_key, np.int64)
    lens = stacks.offsets[1:] - stacks.offsets[:-1]
    nonempty = lens > 0
    leaves = func_of[stacks.flat[stacks.offsets[1:][nonempty] - 1]]
    self_counts = np.bincount(leaves, weights=stacks.counts[nonempty], minlength=n)
    owner = np.repeat(np.arange(len(lens), dtype=np.int64), lens)
    pairs = sorted_unique(owner * n + func_of[stacks.flat])
    total_counts = np.bincount(pairs % n, weights=stacks.counts[pairs // n], minlength=n)
    return self_counts.astype(np.int64).tolist(), total_counts.astype(np.int64).tolist()


def top_of(
    stacks: StackSet,
    range_s: float,
    cost: CostModel | None = None,
    limit: int = 1000,
    include_process: bool = False,
) -> list[dict[str, Any]]:
    """Functions ordered by self samples, with %, core-seconds, CO2 and cost (also annualized)."""
    cost = cost or CostModel()
    self_counts, total_counts = function_counts(stacks)
    total = max(stacks.total, 1)
    per_sample = stacks.cpu_seconds / total
    out = []
    order = sorted(range(len(self_counts)), key=lambda i: (-self_counts[i], -total_counts[i]))
    for idx in order:
        func = stacks.functions[idx]
        if func.kind == "process" and not include_process:
            continue
        if len(out) >= limit:
            break
        s, t = self_counts[idx], total_counts[idx]
        self_cpu, total_cpu = s * per_sample, t * per_sample
        out.append(
            {
                "function": func.function,
                "kind": func.kind,
                "module": func.module,
                "file": func.file,
                "self": s,
                "total": t,
                "self_pct": 100.0 * s / total,
                "total_pct": 100.0 * t / total,
                "self_cpu_s": self_cpu,
                "total_cpu_s": total_cpu,
                "self_co2_kg": cost.co2_kg(self_cpu),
                "total_co2_kg": cost.co2_kg(total_cpu),
                "self_cost": cost.cost(self_cpu),
                "total_cost": cost.cost(total_cpu),
                "annual_self_co2_kg": cost.annualize(cost.co2_kg(self_cpu), range_s),
                "annual_self_cost": cost.annualize(cost.cost(self_cpu), range_s),
            }
        )
    out.sort(key=lambda r: (-r["self"], -r["total"], r["function"]))
    return out[:limit]


def top_functions(
    store: Any, sel: Selection, cost: CostModel | None = None, limit: int = 1000, long_range: bool = True
) -> list[dict[str, Any]]:
    """Top functions of `sel` by self samples."""
    from fleetprof.query.longrange import load_for_range

    stacks = load_for_range(store, sel, long_range)
    return top_of(stacks, (sel.end_ns - sel.start_ns) / 1e9, cost, limit)
