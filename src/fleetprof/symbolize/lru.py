"""A small bounded LRU map that calls a hook on eviction (to release mmaps and open files)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedLru(Generic[K, V]):
    """At most `capacity` entries; the least recently used one is evicted first."""

    def __init__(self, capacity: int, on_evict: Callable[[V], None] | None = None) -> None:
        self._capacity = max(1, capacity)
        self._items: OrderedDict[K, V] = OrderedDict()
        self._on_evict = on_evict

    def get(self, key: K) -> V | None:
        """The value for `key` (marking it most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Insert or replace `key`, evicting the oldest entries beyond capacity."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            _, old = self._items.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(old)

    def values(self) -> list[V]:
        """The values, least recently used first (without marking them used)."""
        return list(self._items.values())

    def clear(self) -> None:
        """Evict everything."""
        while self._items:
            _, old = self._items.popitem(last=False)
            if self._on_evict is not None:
                self._on_evict(old)

    def __len__(self) -> int:
        return len(self._items)
