"""Which table a query reads: raw samples, or the random-sampling pyramid level that still holds enough rows.

Measured by bench/bench_query.py: the cost of a flame graph grows with the rows scanned and, above all, with
the distinct stacks that come back; a level with 1/5^k of the rows (counts scaled by 5^k) cuts both while
keeping every stack's share unbiased. The level is the sparsest one still expected to hold `target_rows`.
"""

from __future__ import annotations

from typing import Any

from fleetprof.query.selection import Selection
from fleetprof.query.stacks import StackSet, load_stacks
from fleetprof.store.schema import PYRAMID_LEVELS

TARGET_ROWS = 100_000


def choose_source(store: Any, sel: Selection, target_rows: int = TARGET_ROWS) -> str:
    """`samples` or `samples_<5^k>`: the sparsest level expected to keep at least `target_rows` rows."""
    if getattr(store, "version", 1) < 2:
        return "samples"
    where, params = sel.where(store)
    rows = store.query(f"SELECT count() AS n FROM {store.t('samples')} WHERE {where}", params)
    n = int(rows.column("n")[0].as_py() or 0)
    source = "samples"
    for factor in PYRAMID_LEVELS:
        if n / factor >= target_rows:
            source = f"samples_{factor}"
    return source


def load_for_range(store: Any, sel: Selection, long_range: bool = True) -> StackSet:
    """Stacks of `sel`, from the pyramid when the range holds many rows and `long_range` allows it."""
    source = choose_source(store, sel) if long_range else "samples"
    return load_stacks(store, sel, source)
