"""Group commit: concurrent requests share one ingest_many call, each returns after its rows are stored."""

from __future__ import annotations

import threading
import time

import pytest

from fleetprof.profile.model import Frame, FrameKind, Profile, Sample
from fleetprof.server.groupcommit import GroupCommit


class FakeStore:
    """Records ingest_many calls; slow, so requests pile up behind a running commit."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[str | None]] = []
        self.stored: set[str | None] = set()
        self.fail = fail

    def ingest_many(self, batches):
        time.sleep(0.05)
        if self.fail:
            raise RuntimeError("disk full")
        self.calls.append([b for _, b in batches])
        self.stored.update(b for _, b in batches)
        return [p.total for p, _ in batches]


def _profile(n: int) -> Profile:
    stack = (Frame(FrameKind.PROCESS, "p"), Frame(FrameKind.KERNEL, "k"))
    return Profile([Sample(stack, 1, 1, "p", "t", count=n)], 20, 0, 10**9, hostname="h")


def test_concurrent_requests_are_grouped_and_acknowledged_after_their_commit():
    store = FakeStore()
    group = GroupCommit(store, window_s=1.0, linger_s=0.2)
    results: dict[str, list[int]] = {}

    def request(i: int) -> None:
        group.announce()
        time.sleep(0.01 * (i % 3))  # decoding
        written = group.submit([(_profile(i + 1), f"b{i}")], announced=True)
        assert f"b{i}" in store.stored  # acknowledged only once stored
        results[f"b{i}"] = written

    threads = [threading.Thread(target=request, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {f"b{i}": [i + 1] for i in range(20)}
    assert len(store.calls) < 20 and sum(len(c) for c in store.calls) == 20


def test_a_steady_load_keeps_whole_groups():
    """Hosts that send their next batch once the last is acknowledged stay in one group per round: the
    next group is gathered after the last one is stored (lingering for the hosts it acknowledged), not
    while it is, which would split them into two alternating half-size groups."""
    store = FakeStore()
    group = GroupCommit(store, window_s=1.0, linger_s=0.2)
    hosts, rounds = 8, 6

    def host(h: int) -> None:
        for r in range(rounds):
            group.submit([(_profile(1), f"h{h}-r{r}")])

    threads = [threading.Thread(target=host, args=(h,)) for h in range(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.stored) == hosts * rounds
    sizes = [len(c) for c in store.calls]
    assert len(sizes) <= rounds + 2, sizes
    assert max(sizes[2:]) == hosts, sizes


def test_a_lone_request_is_not_delayed():
    group = GroupCommit(FakeStore(), window_s=5.0)
    t = time.monotonic()
    assert group.submit([(_profile(3), "solo")]) == [3]
    assert time.monotonic() - t < 1.0


def test_a_failed_group_fails_every_member():
    group = GroupCommit(FakeStore(fail=True))
    with pytest.raises(RuntimeError, match="disk full"):
        group.submit([(_profile(1), "x")])


def test_a_minimum_interval_gathers_requests_into_fewer_groups():
    store = FakeStore()
    group = GroupCommit(store, min_interval_s=0.3)
    group.submit([(_profile(1), "first")])
    threads = [threading.Thread(target=group.submit, args=([(_profile(1), f"later{i}")],)) for i in range(5)]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert len(store.calls) <= 3 and store.stored == {"first", *(f"later{i}" for i in range(5))}


def test_a_withdrawn_request_does_not_hold_the_next_group():
    group = GroupCommit(FakeStore(), window_s=5.0)
    group.announce()
    group.withdraw()  # its body did not decode
    t = time.monotonic()
    group.submit([(_profile(1), "next")])
    assert time.monotonic() - t < 1.0


def _prepare_counting(calls: list[list[str]]):
    """A `prepare` that records each call's raw requests; 'bad...' requests are refused."""

    def prepare(raws):
        calls.append(list(raws))
        return [
            ValueError(f"cannot decode {r}") if r.startswith("bad") else ([(_profile(len(r)), r)], r.upper())
            for r in raws
        ]

    return prepare


def test_raw_requests_are_prepared_together_and_a_refused_one_fails_alone():
    store = FakeStore()
    prepared: list[list[str]] = []
    group = GroupCommit(store, prepare=_prepare_counting(prepared))
    results: dict[str, object] = {}

    def request(name: str) -> None:
        try:
            written, info = group.submit_raw(name, len(name))
            assert name in store.stored  # acknowledged only once stored
            results[name] = (written, info)
        except ValueError as exc:
            results[name] = str(exc)

    names = [f"good{i:02d}" if i % 5 else f"bad{i:02d}" for i in range(20)]
    threads = [threading.Thread(target=request, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in names:
        if name.startswith("bad"):
            assert results[name] == f"cannot decode {name}"
        else:
            assert results[name] == ([len(name)], name.upper())
    assert store.stored == {n for n in names if n.startswith("good")}
    assert len(prepared) < 20 and sorted(r for call in prepared for r in call) == sorted(names)
    assert 0 < len(store.calls) <= len(prepared)


def test_a_failed_store_fails_every_raw_member_and_a_failed_prepare_stores_nothing():
    group = GroupCommit(FakeStore(fail=True), prepare=_prepare_counting([]))
    with pytest.raises(RuntimeError, match="disk full"):
        group.submit_raw("good", 4)

    def broken(raws):
        raise MemoryError("out of memory while decoding")

    store = FakeStore()
    group = GroupCommit(store, prepare=broken)
    with pytest.raises(MemoryError):
        group.submit_raw("good", 4)
    assert store.calls == [] and group.submit([(_profile(2), "later")]) == [2]
