"""Group commit for ingest: requests that arrive together are stored by one `Store.ingest_many` call.

Each INSERT has a fixed cost (a part per table, and the sampled table's view), so one insert per request
caps the server at a few hundred requests a second. Here the first request to arrive becomes the group's
leader: while other requests are still being decoded it waits for them (at most `window_s`), then stores
the whole group in one call and wakes every member. Each request still returns only after its own rows are
committed, and a group fails or succeeds as a whole, so acknowledgement means what it meant before. A lone
request (nothing else in flight) is stored at once: no added latency when the server is quiet.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetprof.profile.columns import ColumnarProfile
from fleetprof.profile.model import Profile

Batch = tuple[Profile | ColumnarProfile, str | None]


@dataclass
class _Member:
    """One request's batches and, once its group is stored, the samples written per batch or the error."""

    batches: Sequence[Batch]
    done: threading.Event = field(default_factory=threading.Event)
    written: list[int] = field(default_factory=list)
    error: BaseException | None = None


class GroupCommit:
    """Groups concurrent `submit` calls into one `store.ingest_many` call (see the module docstring)."""

    def __init__(
        self, store: Any, window_s: float = 1.0, max_samples: int = 400_000, min_interval_s: float = 0.0
    ) -> None:
        """Wait at most `window_s` for requests in flight; a group closes early past `max_samples`;
        groups start at least `min_interval_s` apart (fewer, larger inserts for a busy cluster collector)."""
        self.store = store
        self.window_s = window_s
        self.max_samples = max_samples
        self.min_interval_s = min_interval_s
        self._last_commit = 0.0
        self._cond = threading.Condition()
        self._pending: list[_Member] = []
        self._pending_samples = 0
        self._in_flight = 0  # requests announced (being decoded) but not yet submitted
        self._leading = False
        self._commit = threading.Lock()  # one group is stored at a time, in arrival order
        self.groups = 0
        self.requests = 0

    def announce(self) -> None:
        """A request started decoding: a leader waiting now will wait for it too."""
        with self._cond:
            self._in_flight += 1

    def withdraw(self) -> None:
        """An announced request ended without submitting (bad input)."""
        with self._cond:
            self._in_flight -= 1
            self._cond.notify_all()

    def submit(self, batches: Sequence[Batch], announced: bool = False) -> list[int]:
        """Store `batches` with whatever else is arriving; returns samples written per batch once committed.
        `announced`: this request called `announce` first (its decode counted as in flight)."""
        member = _Member(batches)
        with self._cond:
            if announced:
                self._in_flight -= 1
            self._pending.append(member)
            self._pending_samples += sum(p.total for p, _ in batches)
            self._cond.notify_all()
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        member.done.wait()
        if member.error is not None:
            raise member.error
        return member.written

    def _lead(self) -> None:
        """Gather a group (waiting for requests in flight, up to the window), store it, wake its members."""
        with self._commit:
            pause = self._last_commit + self.min_interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # requests arriving meanwhile join this group
            deadline = time.monotonic() + self.window_s
            with self._cond:
                while self._in_flight > 0 and self._pending_samples < self.max_samples:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                group, self._pending = self._pending, []
                self._pending_samples = 0
                self._leading = False
            self._last_commit = time.monotonic()
            self._store(group)

    def _store(self, group: list[_Member]) -> None:
        """One ingest_many call for the whole group; every member gets its share or the error."""
        flat = [b for m in group for b in m.batches]
        try:
            written = self.store.ingest_many(flat) if flat else []
        except BaseException as exc:  # the group fails as a whole; each request reports it
            for member in group:
                member.error = exc
                member.done.set()
            return
        self.groups += 1
        self.requests += len(group)
        at = 0
        for member in group:
            member.written = written[at : at + len(member.batches)]
            at += len(member.batches)
            member.done.set()
