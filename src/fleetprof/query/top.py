"""Top functions: self and total samples, shares, CPU time, CO2 and cost per function."""

from __future__ import annotations

from typing import Any

from fleetprof.query.cost import CostModel
from fleetprof.query.selection import Selection
from fleetprof.query.stacks import StackSet


def function_counts(stacks: StackSet) -> tuple[list[int], list[int]]:
    """(self, total) samples per function index; a function counts once per stack for its total."""
    n = len(stacks.functions)
    self_counts = [0] * n
    total_counts = [0] * n
    func_of = stacks.func_of_key
    for keys, count in zip(stacks.stacks, stacks.counts, strict=True):
        if not keys:
            continue
        self_counts[func_of[keys[-1]]] += count
        for f in {func_of[k] for k in keys}:
            total_counts[f] += count
    return self_counts, total_counts


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
    for idx, func in enumerate(stacks.functions):
        if func.kind == "process" and not include_process:
            continue
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
