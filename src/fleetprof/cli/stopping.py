"""Ctrl-C and SIGTERM while sampling mean "stop and write what you have": a flag the sampling loop polls,
instead of an exception that could land inside a ring-buffer callback and be lost there."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set by SIGINT/SIGTERM while `catching()` is active."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal = 0

    def is_set(self) -> bool:
        """Whether a stop was asked for."""
        return self.event.is_set()

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signal = signum
        self.event.set()

    @contextmanager
    def catching(self) -> Iterator[StopRequest]:
        """Route SIGINT and SIGTERM to this flag for the duration of the block (main thread only)."""
        previous = {sig: signal.signal(sig, self._handle) for sig in _SIGNALS}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
