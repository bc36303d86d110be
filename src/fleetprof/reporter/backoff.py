"""Exponential backoff with full jitter for retries to the collector and the symbol store."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delays `base * factor**n` capped at `cap`, each drawn uniformly from [delay/2, delay] (jitter keeps
    a fleet that lost its collector together from retrying in lockstep)."""

    def __init__(
        self,
        base_s: float = 1.0,
        cap_s: float = 60.0,
        factor: float = 2.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.factor = factor
        self._rand = rand
        self.failures = 0

    def next_delay(self) -> float:
        """The wait before the next attempt after one more failure."""
        ceiling = min(self.cap_s, self.base_s * self.factor**self.failures)
        self.failures += 1
        return ceiling * (0.5 + 0.5 * self._rand())

    def reset(self) -> None:
        """A success: the next failure starts from `base_s` again."""
        self.failures = 0
