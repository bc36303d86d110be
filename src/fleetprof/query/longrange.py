"""Which rows a query reads: raw samples, or the level of the random-sampling pyramid that still holds enough.

Measured by bench/bench_query.py: the cost of a flame graph grows with the rows scanned and with the distinct
stacks that come back; level k of `samples_sampled` keeps 1/5^k of the rows (counts scaled by 5^k), which
cuts both while keeping every stack's share unbiased. The level is the sparsest one still expected to hold
`target_rows`, found by counting the sparse levels first (see PROBES), so the choice never scans the raw
rows of a long range, and a store created with other levels still answers. Stores before schema v4 read
the per-level tables `samples_<5^k>` instead.
"""

from __future__ import annotations

from typing import Any

from fleetprof.query.selection import Selection
from fleetprof.query.stacks import Source, StackSet, load_stacks
from fleetprof.store.schema import PYRAMID_LEVELS

TARGET_ROWS = 100_000


# Levels probed together, sparsest first: a probe counts the rows of its levels in range, which are under
# target_rows x 5^3 when no sparser probe found enough (at most 12.5 M); the first probe holding a level
# with enough rows ends the search. A 10,000-host fleet's month stops in the first probe (level 10 holds
# ~300 k rows), a 10 M-row store in the last.
PROBES = ((10, 99), (7, 9), (4, 6), (0, 3))


def choose_source(store: Any, sel: Selection, target_rows: int = TARGET_ROWS) -> Source:
    """Raw samples, or the sparsest pyramid level that holds at least `target_rows` rows of `sel`."""
    version = getattr(store, "version", 1)
    if version < 2:
        return Source()
    where, params = sel.where(store)
    if version >= 4:
        for low, high in PROBES:
            levels = store.query(
                f"SELECT level, count() AS n FROM {store.t('samples_sampled')} WHERE level >= {low} "
                f"AND level <= {high} AND {where} GROUP BY level",
                params,
            )
            enough = [int(r["level"]) for r in levels.to_pylist() if r["n"] >= target_rows]
            if enough:
                return Source("samples_sampled", max(enough))
        return Source()
    rows = store.query(f"SELECT count() AS n FROM {store.t('samples')} WHERE {where}", params)
    n = int(rows.column("n")[0].as_py() or 0)
    source = Source()
    for factor in PYRAMID_LEVELS:
        if n / factor >= target_rows:
            source = Source(f"samples_{factor}")
    return source


def load_for_range(store: Any, sel: Selection, long_range: bool = True) -> StackSet:
    """Stacks of `sel`, from the pyramid when the range holds many rows and `long_range` allows it."""
    source = choose_source(store, sel) if long_range else Source()
    return load_stacks(store, sel, source)
