"""Which rows a query reads: raw samples, or the level of the random-sampling pyramid that still holds enough.

Measured by bench/bench_query.py: the cost of a flame graph grows with the rows scanned and with the distinct
stacks that come back; level k of `samples_sampled` keeps 1/5^k of the rows (counts scaled by 5^k), which
cuts both while keeping every stack's share unbiased. The level is the sparsest one still expected to hold
`target_rows` (counted, so a store created with fewer levels still answers). Stores before schema v4 read
the per-level tables `samples_<5^k>` instead.
"""

from __future__ import annotations

from typing import Any

from fleetprof.query.selection import Selection
from fleetprof.query.stacks import Source, StackSet, load_stacks
from fleetprof.store.schema import PYRAMID_LEVELS, SAMPLED_LEVELS

TARGET_ROWS = 100_000


def choose_source(store: Any, sel: Selection, target_rows: int = TARGET_ROWS) -> Source:
    """Raw samples, or the sparsest pyramid level expected to keep at least `target_rows` rows."""
    version = getattr(store, "version", 1)
    if version < 2:
        return Source()
    where, params = sel.where(store)
    rows = store.query(f"SELECT count() AS n FROM {store.t('samples')} WHERE {where}", params)
    n = int(rows.column("n")[0].as_py() or 0)
    source = Source()
    if version >= 4:
        if n < target_rows * 5 ** min(SAMPLED_LEVELS):
            return source
        levels = store.query(
            f"SELECT level, count() AS n FROM {store.t('samples_sampled')} WHERE {where} GROUP BY level",
            params,
        )
        for row in sorted(levels.to_pylist(), key=lambda r: r["level"]):
            if row["n"] >= target_rows:  # the sparsest level that holds enough rows
                source = Source("samples_sampled", int(row["level"]))
        return source
    for factor in PYRAMID_LEVELS:
        if n / factor >= target_rows:
            source = Source(f"samples_{factor}")
    return source


def load_for_range(store: Any, sel: Selection, long_range: bool = True) -> StackSet:
    """Stacks of `sel`, from the pyramid when the range holds many rows and `long_range` allows it."""
    source = choose_source(store, sel) if long_range else Source()
    return load_stacks(store, sel, source)
