"""Group commit for ingest: requests that arrive together are decoded together and stored by one
`Store.ingest_many` call.

Each INSERT has a fixed cost (a part per table, and the sampled table's view), and so has each decode (a
request's tables are scanned once per call), so one of each per request caps the server at a few hundred
requests a second. Here the first request to arrive becomes the group's leader: once the previous group is
stored it takes every request pending (waiting, at most `window_s`, for announced ones still being decoded
by their own threads, and lingering, at most `linger_s`, until the group is as large as the previous one),
hands the raw ones to `prepare` in one call (the server's: decode every body together), then stores the
group in one call and wakes every member. Each request still returns only after its own rows are committed,
and the store fails or succeeds for the group as a whole, so acknowledgement means what it meant before; a
request `prepare` refuses (a malformed body) gets its own error at once and costs the others nothing.

Groups are gathered only once the previous one is stored, not while it is: the requests it acknowledges
come back (their hosts' next batches) in time to join the next group, where gathering early split a steady
load into two alternating half-size groups and paid the fixed costs twice (bench_ingest, one core, 20
hosts: 113 k samples/s against 69 k; bench_fleet_sim, two cores: the same wall rate at 16 % less CPU,
since there the old overlap of decoding with storing bought back what the small groups cost). The linger
is what lets them come back; it is spent only when the previous group was larger than what is pending,
so a lone request on a quiet server is handled at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fleetprof.profile.columns import ColumnarProfile
from fleetprof.profile.model import Profile

Batch = tuple[Profile | ColumnarProfile, str | None]
# What `prepare` makes of one raw request: its batches and what the caller wants back beside the counts.
Prepared = tuple[Sequence[Batch], Any]
Prepare = Callable[[list[Any]], list["Prepared | BaseException"]]


@dataclass
class _Member:
    """One request (its batches, or a raw request for `prepare`) and, once its group is stored, the samples
    written per batch or the error."""

    batches: Sequence[Batch] = ()
    raw: Any = None
    info: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    written: list[int] = field(default_factory=list)
    error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        """End this member with `error` (raised in its own thread)."""
        self.error = error
        self.done.set()


class GroupCommit:
    """Groups concurrent `submit`/`submit_raw` calls into one `prepare` and one `store.ingest_many` call
    (see the module docstring)."""

    def __init__(
        self,
        store: Any,
        window_s: float = 1.0,
        max_samples: int = 400_000,
        min_interval_s: float = 0.0,
        prepare: Prepare | None = None,
        max_raw_bytes: int = 64 << 20,
        linger_s: float = 0.02,
    ) -> None:
        """Wait at most `window_s` for requests in flight and `linger_s` for a group as large as the last
        one; a group closes early past `max_samples` decoded samples or `max_raw_bytes` of raw requests;
        groups start at least `min_interval_s` apart (fewer, larger inserts for a busy cluster collector);
        `prepare` turns raw requests into batches."""
        self.store = store
        self.window_s = window_s
        self.max_samples = max_samples
        self.max_raw_bytes = max_raw_bytes
        self.min_interval_s = min_interval_s
        self.linger_s = linger_s
        self._last_size = 0  # members of the last group gathered
        self.prepare = prepare
        self._last_commit = 0.0
        self._cond = threading.Condition()
        self._pending: list[_Member] = []
        self._pending_samples = 0
        self._pending_bytes = 0
        self._in_flight = 0  # requests announced (being decoded) but not yet submitted
        self._leading = False
        self._commit = threading.Lock()  # one group is gathered, prepared and stored at a time, in order
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
        member = _Member(batches=batches)
        self._join(member, sum(p.total for p, _ in batches), 0, announced)
        return member.written

    def submit_raw(self, raw: Any, size: int) -> tuple[list[int], Any]:
        """Have the leader `prepare` `raw` (`size` bytes) with the rest of its group and store the result;
        returns (samples written per batch, what `prepare` returned beside the batches) once committed, or
        raises what `prepare` or the store raised for it."""
        if self.prepare is None:
            raise TypeError("submit_raw needs a GroupCommit made with prepare=")
        member = _Member(raw=raw)
        self._join(member, 0, size, False)
        return member.written, member.info

    def _join(self, member: _Member, samples: int, size: int, announced: bool) -> None:
        """Queue `member`, lead its group if no one is leading, wait for its end."""
        with self._cond:
            if announced:
                self._in_flight -= 1
            self._pending.append(member)
            self._pending_samples += samples
            self._pending_bytes += size
            self._cond.notify_all()
            lead = not self._leading
            if lead:
                self._leading = True
        if lead:
            self._lead()
        member.done.wait()
        if member.error is not None:
            raise member.error

    def _full(self) -> bool:
        """Whether the pending group is big enough to close without waiting for requests in flight."""
        return self._pending_samples >= self.max_samples or self._pending_bytes >= self.max_raw_bytes

    def _lead(self) -> None:
        """Once the previous group is stored: gather a group (waiting for requests in flight up to the
        window, lingering for the previous group's size), prepare its raw members, store it and wake them."""
        with self._commit:
            pause = self._last_commit + self.min_interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)  # requests arriving meanwhile join this group
            now = time.monotonic()
            deadline, linger_until = now + self.window_s, now + self.linger_s
            with self._cond:
                while not self._full():
                    now = time.monotonic()
                    if self._in_flight > 0 and now < deadline:
                        self._cond.wait(deadline - now)
                    elif len(self._pending) < self._last_size and now < linger_until:
                        self._cond.wait(linger_until - now)
                    else:
                        break
                group, self._pending = self._pending, []
                self._pending_samples = self._pending_bytes = 0
                self._last_size = len(group)
                self._leading = False
            self._last_commit = time.monotonic()
            self._store(self._prepare(group))

    def _prepare(self, group: list[_Member]) -> list[_Member]:
        """Turn the group's raw members into batches with one `prepare` call; members it refuses end now
        with their error. Returns the members left to store."""
        raw = [m for m in group if m.raw is not None]
        if raw:
            assert self.prepare is not None
            try:
                results = self.prepare([m.raw for m in raw])
                if len(results) != len(raw):
                    raise RuntimeError(f"prepare returned {len(results)} results for {len(raw)} requests")
            except BaseException as exc:  # nothing of this group is stored; each raw request reports it
                results = [exc] * len(raw)
            for member, result in zip(raw, results, strict=True):
                if isinstance(result, BaseException):
                    member.fail(result)
                else:
                    member.batches, member.info = result
        return [m for m in group if m.error is None]

    def _store(self, group: list[_Member]) -> None:
        """One ingest_many call for the whole group; every member gets its share or the error."""
        flat = [b for m in group for b in m.batches]
        try:
            written = self.store.ingest_many(flat) if flat else []
        except BaseException as exc:  # the group fails as a whole; each request reports it
            for member in group:
                member.fail(exc)
            return
        self.groups += 1
        self.requests += len(group)
        at = 0
        for member in group:
            member.written = written[at : at + len(member.batches)]
            at += len(member.batches)
            member.done.set()
