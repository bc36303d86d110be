"""Fifty hosts ingest while queries run; per-host filters return exactly each host's data."""

from __future__ import annotations

import threading
import time

from fleetprof.query import Selection, export_profile, flame_graph, timeline, top_functions
from fleetprof.store.synthetic import fleet_profile

NOW = time.time_ns() // 10**9 * 10**9
HOSTS = [f"fleet-{i:02d}" for i in range(50)]


def test_fifty_hosts_concurrent_ingest_and_queries(store, pool):
    errors: list[BaseException] = []
    expected = {h: 40 + i for i, h in enumerate(HOSTS)}
    window = Selection(NOW - 10**10, NOW + 10**10)

    def ingest(hosts: list[str]) -> None:
        try:
            for h in hosts:
                for b in range(2):
                    profile = fleet_profile(pool, h, NOW + b * 10**9, expected[h], duration_ns=10**9, seed=b)
                    assert store.ingest(profile, f"{h}-{b}") == expected[h]
        except BaseException as exc:
            errors.append(exc)

    def query(stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                flame_graph(store, window)
                top_functions(store, window, limit=10)
        except BaseException as exc:
            errors.append(exc)

    stop = threading.Event()
    readers = [threading.Thread(target=query, args=(stop,)) for _ in range(2)]
    writers = [threading.Thread(target=ingest, args=(HOSTS[i::4],)) for i in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert not errors, errors
    for h in [*HOSTS[::7], HOSTS[-1]]:
        sel = Selection(window.start_ns, window.end_ns, {"host": [h]})
        assert flame_graph(store, sel)["total"] == 2 * expected[h]
        exported = export_profile(store, sel)
        assert exported.total == 2 * expected[h] and exported.hostname == h
    series = {s["group"]: s["total"] for s in timeline(store, window, "host", max_series=100)["series"]}
    assert {h: series[h] for h in HOSTS} == {h: 2 * n for h, n in expected.items()}
    two = Selection(window.start_ns, window.end_ns, {"host": HOSTS[:2]})
    assert flame_graph(store, two)["total"] == 2 * (expected[HOSTS[0]] + expected[HOSTS[1]])
