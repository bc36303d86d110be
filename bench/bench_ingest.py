"""End-to-end ingest rate on one core — gzip'd OTLP request bodies through the server's ingest path
(fleetprof.server.ingest.Ingestor: inflate, decode, merge per host, group commit into the embedded store)
from N simulated hosts with realistic stacks — against a bare bulk INSERT of the same sample rows into
chDB, and the bytes stored per sample and per core-day at 20 Hz.

The whole process (every thread, chDB's too) is pinned to one CPU first (`--cpus`), so the headline, wall
samples/s, is what one core does. Each host sends one 5-second batch per round (8 cores at 20 Hz = 800
samples) drawn from a pool of realistic stacks, encoded and gzip'd as the agent sends it before timing;
one request thread per host sends its rounds one after the other, as the HTTP and gRPC workers would. The
server's decode is timed alone beside its peers: the exact decoder (from_otlp_bytes, one Sample object
per sample), the columnar one a request at a time, and a group's requests decoded together (what the
group-commit leader does). The store alone (Store.ingest_many of decoded groups) is timed too, against one
batch per call and the bare INSERT. Bytes are every table's compressed parts after merges (samples, the
long-range pyramid, stacks, frames, hosts, batches) over the samples stored.

    .venv/bin/python bench/bench_ingest.py [--hosts 20] [--rounds 30] [--stacks 20000] [--cpus 1]
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _common import pin_process

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.columns import ColumnarProfile
from fleetprof.server.ingest import Ingestor, decode_bodies, decode_body, inflate
from fleetprof.store import Store, open_store, schema
from fleetprof.store.rows import IdCache, build_group
from fleetprof.store.synthetic import StackPool, fleet_profile
from fleetprof.wire.otlp_decode import from_otlp_bytes

CORE_DAY_SAMPLES = 20 * 86_400
MAX_BODY = 64 << 20
PROTOBUF = "application/x-protobuf"


def _cpu(fn) -> float:
    """CPU seconds `fn()` takes."""
    cpu = time.process_time()
    fn()
    return time.process_time() - cpu


def _decoded_groups(requests: list[bytes], group: int) -> list[list[ColumnarProfile]]:
    """Each group of `group` requests decoded together, as the group-commit leader decodes them."""
    out = []
    for i in range(0, len(requests), group):
        for profiles in decode_bodies([(r, PROTOBUF) for r in requests[i : i + group]]):
            assert isinstance(profiles, list) and len(profiles) == 1
            out.append(profiles[0])
    return out


def _serve(store: Store, bodies: list[list[tuple[bytes, str]]]) -> tuple[float, float, Ingestor]:
    """Each host's bodies sent one after the other by its own request thread, all hosts at once, through
    inflate + Ingestor.ingest_bytes; (wall s, CPU s, the ingestor)."""
    ingestor = Ingestor(store)

    def host(items: list[tuple[bytes, str]]) -> int:
        return sum(ingestor.ingest_bytes(inflate(b, "gzip", MAX_BODY), batch).samples for b, batch in items)

    t, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(len(bodies)) as pool:
        sum(pool.map(host, bodies))
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    return wall, cpu, ingestor


def main() -> None:
    """Pin to one core; time decode and its peers, then the server path, the store alone and the bare
    INSERT; then measure storage."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--stacks", type=int, default=20_000)
    ap.add_argument("--cpus", type=int, default=1, help="cores the process may use (its threads and chDB's)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--fsync", action="store_true", help="fsync every part (power-loss safety; slow disks)")
    args = ap.parse_args()
    cpus = pin_process(set(sorted(os.sched_getaffinity(0))[-args.cpus :]))
    tmp = tempfile.TemporaryDirectory(prefix="fleetprof-bench-ingest-")
    data_dir = args.data_dir or Path(tmp.name)
    pool = StackPool.build(args.stacks, seed=5)
    start = time.time_ns() - args.rounds * 5 * 10**9
    synthetic = [
        (fleet_profile(pool, f"host{h:03d}", start + r * 5 * 10**9, 800, seed=r), f"h{h}-r{r}")
        for r in range(args.rounds)
        for h in range(args.hosts)
    ]
    requests = [to_otlp_request(p).SerializeToString() for p, _ in synthetic]
    bodies = [gzip.compress(r, 6) for r in requests]
    total = sum(p.total for p, _ in synthetic)
    print(
        f"pinned to {len(cpus)} CPU ({sorted(cpus)}); {args.hosts} hosts x {args.rounds} rounds: "
        f"{len(requests):,} requests, {total:,} samples, {sum(map(len, bodies)) / len(bodies) / 1e3:.1f} kB "
        "gzip'd per request"
    )

    warm = fleet_profile(StackPool.build(50, seed=99), "warm-up", time.time_ns(), 20)
    decode_body(to_otlp_request(warm).SerializeToString())  # the one-time loading of code is not timed
    exact_cpu = _cpu(lambda: [from_otlp_bytes(r) for r in requests])
    single_cpu = _cpu(lambda: [decode_body(r) for r in requests])
    decoded: list[ColumnarProfile] = []
    group_cpu = _cpu(lambda: decoded.extend(_decoded_groups(requests, args.hosts)))
    assert sum(p.total for p in decoded) == total
    inflate_cpu = _cpu(lambda: [inflate(b, "gzip", MAX_BODY) for b in bodies])
    print(
        f"OTLP decode per CPU-second: {total / group_cpu:,.0f} samples/s for {args.hosts} requests decoded "
        f"together (the server's), {total / single_cpu:,.0f} one request at a time "
        f"({single_cpu / group_cpu:.2f}x the time), {total / exact_cpu:,.0f} with the exact decoder (a "
        f"Sample object per sample, {exact_cpu / group_cpu:.1f}x the time); gzip inflate "
        f"{total / inflate_cpu:,.0f}"
    )

    store = open_store(data_dir, database="bench_ingest", fsync=args.fsync)
    pin_process(cpus)
    per_host = [
        [(gzip_body, batch) for gzip_body, (_, batch) in zip(bodies, synthetic, strict=True)][h :: args.hosts]
        for h in range(args.hosts)
    ]
    wall, cpu, ingestor = _serve(store, per_host)
    rate = total / wall
    stored_total = store.query(f"SELECT sum(count) AS n FROM {store.t('samples')}").column("n")[0].as_py()
    assert stored_total == total, (stored_total, total)
    print(
        f"server path (inflate + Ingestor.ingest_bytes, {args.hosts} request threads): {wall:.2f} s, "
        f"{rate:,.0f} samples/s on {len(cpus)} core(s), {len(requests) / wall:,.0f} requests/s "
        f"({total / cpu:,.0f} per CPU-second); {ingestor.group.groups:,} group commits for "
        f"{ingestor.group.requests:,} requests"
    )

    alone = open_store(data_dir, database="bench_ingest_alone", fsync=args.fsync)
    pin_process(cpus)
    batches = [(p, b) for p, (_, b) in zip(decoded, synthetic, strict=True)]
    t = time.perf_counter()
    store_cpu = _cpu(
        lambda: [alone.ingest_many(batches[i : i + args.hosts]) for i in range(0, len(batches), args.hosts)]
    )
    store_rate = total / (time.perf_counter() - t)
    alone.close()
    one = open_store(data_dir, database="bench_ingest_single", fsync=args.fsync)
    pin_process(cpus)
    singles = batches[: max(len(batches) // 10, 1)]
    t = time.perf_counter()
    for profile, batch in singles:
        one.ingest(profile, batch)
    single_rate = sum(p.total for p, _ in singles) / (time.perf_counter() - t)
    one.close()
    rows = build_group([p for p, _ in batches], IdCache(), 0).samples.combine_chunks()
    store.backend.execute(
        f"CREATE TABLE IF NOT EXISTS bench_ingest.bare AS {store.t('samples')} "
        f"ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY {schema.SAMPLES.order_by}"
    )
    t = time.perf_counter()
    store.backend.insert("bench_ingest.bare", rows)
    bare_rate = total / (time.perf_counter() - t)
    print(
        f"store alone (Store.ingest_many, {args.hosts} decoded batches per call): {store_rate:,.0f} "
        f"samples/s ({total / store_cpu:,.0f} per CPU-second); one batch per call {single_rate:,.0f}/s; "
        f"bare bulk INSERT of the same {rows.num_rows:,} rows: {bare_rate:,.0f} samples/s"
    )

    store.optimize()
    for table in ("samples", "stacks", "frames", "symbols", "executables"):
        store.backend.execute(f"OPTIMIZE TABLE {store.t(table)} FINAL")
    parts = store.query(
        "SELECT table, sum(data_compressed_bytes) AS b FROM system.parts "
        "WHERE database = 'bench_ingest' AND active AND table != 'bare' GROUP BY table ORDER BY b DESC"
    ).to_pylist()
    stored = sum(p["b"] for p in parts)
    per_sample = stored / total
    print("bytes by table: " + ", ".join(f"{p['table']} {p['b'] / total:.2f}/sample" for p in parts))
    per_core_day = per_sample * CORE_DAY_SAMPLES / 1e6
    rowwise = sum(p["b"] for p in parts if p["table"].startswith("samples")) / total
    print(
        f"sample rows alone (raw + pyramid): {rowwise:.2f} bytes/sample; the rest is stacks/frames met once"
    )
    store.close()
    tmp.cleanup()
    print(
        f"end-to-end ingest {rate:,.0f} samples/s on {len(cpus)} core(s) (gzip'd OTLP bodies through "
        f"Ingestor.ingest_bytes into the embedded store, {args.hosts} hosts' request threads, group commit; "
        f"goal 200,000), {rate / bare_rate:.2f}x a bare bulk INSERT of the same rows "
        f"({store_rate / bare_rate:.2f}x for the store alone, {single_rate / bare_rate:.2f}x one batch per "
        f"call); decode {exact_cpu / group_cpu:.1f}x faster than the exact decoder; "
        f"{per_sample:.2f} bytes/sample, {per_core_day:.1f} MB per core-day at 20 Hz"
    )


if __name__ == "__main__":
    main()
