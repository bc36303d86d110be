"""Thread-safe named counters: why scans and file reads degraded, surfaced instead of raised."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """A `Counter` guarded by a lock, so the polling and rescan threads can both count."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1) -> None:
        """Add `amount` to counter `name`."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """A copy of every non-zero counter."""
        with self._lock:
            return {name: value for name, value in self._counts.items() if value}
