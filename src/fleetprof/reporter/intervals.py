"""Per-interval stats for batches: counters become the change since the previous batch, sizes stay as they
are, so each batch says what happened in its own window rather than since the agent started."""

from __future__ import annotations

# Sizes and capacities (current values, not counts of events).
GAUGES = frozenset(
    {
        "unwind_tables",
        "unwind_map_bytes",
        "python_processes",
        "file_inodes",
        "processes",
        "open_files",
        "lingering_files",
        "tracked_pids",
        "pinned_files",
        "reporter_spooled_batches",
        "reporter_spooled_bytes",
        "symbols_pending",
    }
)
GAUGE_SUFFIXES = ("_capacity", "_used", "_entries", "_pending")


def is_gauge(name: str) -> bool:
    """Whether `name` is a size rather than a counter."""
    return name in GAUGES or name.endswith(GAUGE_SUFFIXES)


class IntervalStats:
    """Turns cumulative counters into per-interval ones."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def delta(self, current: dict[str, int]) -> dict[str, int]:
        """Counters minus their value at the previous call (a counter that went back, e.g. after a reset,
        counts from zero); gauges as they are."""
        out: dict[str, int] = {}
        for name, value in current.items():
            if is_gauge(name):
                out[name] = value
                continue
            before = self._last.get(name, 0)
            out[name] = value - before if value >= before else value
        self._last = dict(current)
        return out
