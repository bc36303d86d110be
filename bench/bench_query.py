"""Query latency of the store: flame graph and top functions over 1 M and 10 M samples with 100 k distinct
stacks, on a short range (the last hour) and a 30-day range, read from raw samples ("before") and through
the long-range scheme ("after", the 5^k random-sampling pyramid). Goal: < 1 s. Stacks are read through
an in-process cache (content-addressed rows never change): "cold" is the first raw query after clearing it.

Stacks and frames go in through `Store.ingest` (one profile holding every stack once); the bulk of the
samples is generated inside chDB with INSERT … SELECT (Zipf-like stack popularity, 50 hosts, 30 days).

    .venv/bin/python bench/bench_query.py [--sizes 1000000,10000000] [--stacks 100000] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fleetprof.profile.model import Profile, Sample
from fleetprof.query import Selection, flame_graph, top_functions
from fleetprof.query.stacks import stack_cache
from fleetprof.store import open_store
from fleetprof.store.synthetic import StackPool

DAY_NS = 86_400 * 10**9


def seed_stacks(store, pool: StackPool, now_ns: int) -> list[int]:
    """Ingest every stack once (frames, stacks tables) and return their ids in popularity order."""
    samples = [
        Sample(
            stack,
            pid=1,
            tid=1,
            process_name="seed",
            thread_name="seed",
            count=1,
            timestamps_ns=[now_ns - DAY_NS],
        )
        for stack in pool.stacks
    ]
    store.ingest(Profile(samples, 20, now_ns - DAY_NS, 10**9, hostname="seed"), "seed")
    from fleetprof.store.rows import IdCache

    cache = IdCache()
    return [cache.stack(s)[0] for s in pool.stacks]


def fill(store, ids: list[int], n: int, now_ns: int) -> None:
    """n samples over 30 days from 50 hosts, stack popularity skewed to the first ids."""
    chunk = 2_000_000
    done = 0
    while done < n:
        k = min(chunk, n - done)
        store.backend.execute(
            f"INSERT INTO {store.t('samples')} (ts, host, host_id, process, pid, tid, thread, container, "
            "pod_uid, executable, stack_id, count, frequency) SELECT "
            "fromUnixTimestamp64Milli({end:Int64} - toInt64(rand64() % {span:UInt64}), 'UTC'), "
            "concat('host', toString(rand() % 50)), '', concat('proc', toString(rand(1) % 8)), "
            "1000 + rand(2) % 64, 1000 + rand(3) % 256, concat('worker-', toString(rand(4) % 4)), "
            "'', '', '', {ids:Array(UInt64)}"
            "[1 + toUInt32(pow(rand(5) / 4294967296.0, 3) * length({ids:Array(UInt64)}))], "
            "1, 20 FROM numbers({k:UInt64})",
            {"end": now_ns // 10**6, "span": 30 * 86_400_000, "ids": ids, "k": k},
        )
        done += k


def timed(fn, repeat: int = 3) -> float:
    """Median seconds of `repeat` runs."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    """Fill, then time each query shape before and after the long-range scheme."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000")
    ap.add_argument("--stacks", type=int, default=100_000)
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    tmp = tempfile.TemporaryDirectory(prefix="fleetprof-bench-query-")
    data_dir = args.data_dir or Path(tmp.name)
    t = time.perf_counter()
    pool = StackPool.build(args.stacks, seed=3)
    print(f"pool of {len(pool.stacks)} stacks built in {time.perf_counter() - t:.1f} s")
    now = time.time_ns()
    worst_after = 0.0
    worst_cold = 0.0
    for size in sizes:
        store = open_store(data_dir, database=f"bench_q_{size}")
        t = time.perf_counter()
        ids = seed_stacks(store, pool, now)
        fill(store, ids, size, now)
        store.backend.execute(f"OPTIMIZE TABLE {store.t('samples')} FINAL")
        print(f"{size:,} samples stored in {time.perf_counter() - t:.1f} s")
        for label, span in (("1 h", 3600 * 10**9), ("30 d", 30 * DAY_NS)):
            sel = Selection(now - span, now + 1)
            for name, fn in (("flame graph", flame_graph), ("top functions", top_functions)):
                stack_cache(store).stacks.clear()
                cold = timed(lambda fn=fn, sel=sel, st=store: fn(st, sel, long_range=False), repeat=1)
                before = timed(lambda fn=fn, sel=sel, st=store: fn(st, sel, long_range=False))
                after = timed(lambda fn=fn, sel=sel, st=store: fn(st, sel, long_range=True))
                worst_after = max(worst_after, after)
                worst_cold = max(worst_cold, cold)
                print(
                    f"{size:>11,} samples {label:>4} {name:<13}: raw {before:6.3f} s (cold stack cache "
                    f"{cold:6.3f} s), long-range scheme {after:6.3f} s ({before / after:4.1f}x)"
                )
        store.close()
    tmp.cleanup()
    print(
        f"slowest query over {max(sizes):,} samples (1 h and 30 d) with the long-range scheme: "
        f"{worst_after:.3f} s (goal < 1 s); slowest raw query on a cold stack cache {worst_cold:.3f} s"
    )


if __name__ == "__main__":
    main()
