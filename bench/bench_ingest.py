"""End-to-end ingest rate — OTLP request bytes decoded and stored in the embedded store, per CPU-second and
per wall second — from N simulated hosts with realistic stacks, against a bare bulk INSERT of the same sample
rows into chDB, and the bytes stored per sample and per core-day at 20 Hz.

Each host sends one 5-second batch per round (8 cores at 20 Hz = 800 samples) drawn from a pool of
realistic stacks, encoded as the agent sends it (OTLP protobuf) before timing. The server's decode
(fleetprof.server.ingest.decode_body: the columnar decoder, no object per sample) turns each request into
the profile it stores; the exact decoder (from_otlp_bytes, one Sample object per sample) is timed beside
it. Bodies are timed after gzip is removed, as the server hands them to the decoder (the HTTP route inflates
a gzip body first; its cost is printed on a line of its own). The headline is decode + store. The same
batches as synthetic profiles with per-request objects (what nothing shares across requests) are stored
too, for comparison. Bytes are every table's compressed parts after merges (samples, the long-range
pyramid, stacks, frames, hosts, batches) over the samples stored.

    .venv/bin/python bench/bench_ingest.py [--hosts 20] [--rounds 30] [--stacks 20000] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.columns import ColumnarProfile
from fleetprof.profile.model import Profile
from fleetprof.server.ingest import decode_body, inflate
from fleetprof.store import Store, open_store, schema
from fleetprof.store.rows import IdCache, build_group
from fleetprof.store.synthetic import StackPool, fleet_profile
from fleetprof.wire.otlp_decode import from_otlp_bytes

CORE_DAY_SAMPLES = 20 * 86_400


def _ingest_all(
    store: Store, profiles: list[tuple[Profile, str]] | list[tuple[ColumnarProfile, str]], group: int
) -> tuple[float, float]:
    """Store `profiles` `group` batches per call; (wall seconds, CPU seconds)."""
    t = time.perf_counter()
    cpu = time.process_time()
    for i in range(0, len(profiles), group):
        store.ingest_many(profiles[i : i + group])
    return time.perf_counter() - t, time.process_time() - cpu


def _decode(requests: list[bytes]) -> tuple[list[ColumnarProfile], float, float]:
    """Each request's one profile, as the server decodes it; and the (wall, CPU) seconds that took. A
    small request of other stacks is decoded first: the one-time loading of compiled code is not timed."""
    warm = fleet_profile(StackPool.build(50, seed=99), "warm-up", time.time_ns(), 20)
    decode_body(to_otlp_request(warm).SerializeToString())
    t = time.perf_counter()
    cpu = time.process_time()
    decoded = [decode_body(r) for r in requests]
    seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert all(len(d) == 1 and isinstance(d[0], ColumnarProfile) for d in decoded)
    return [d[0] for d in decoded], seconds, cpu  # type: ignore[misc]


def _exact_decode(requests: list[bytes]) -> float:
    """CPU seconds the exact decoder (one Sample object per sample) takes for `requests`."""
    cpu = time.process_time()
    for r in requests:
        from_otlp_bytes(r)
    return time.process_time() - cpu


def _inflate(requests: list[bytes]) -> float:
    """CPU seconds the HTTP route's gzip inflate takes for `requests` gzipped as the agent sends them."""
    bodies = [gzip.compress(r, 6) for r in requests]
    cpu = time.process_time()
    for body in bodies:
        inflate(body, "gzip", 64 << 20)
    return time.process_time() - cpu


def main() -> None:
    """Time Store.ingest, then the bare INSERT of the same rows, then measure storage."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--stacks", type=int, default=20_000)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--fsync", action="store_true", help="fsync every part (power-loss safety; slow disks)")
    ap.add_argument(
        "--group", type=int, default=0, help="batches per group commit (default: one round's hosts)"
    )
    args = ap.parse_args()
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
    decoded, decode_s, decode_cpu = _decode(requests)
    profiles = [(p, b) for p, (_, b) in zip(decoded, synthetic, strict=True)]
    total = sum(p.total for p, _ in profiles)
    assert total == sum(p.total for p, _ in synthetic)
    exact_cpu = _exact_decode(requests)
    print(
        "OTLP decode (server, columnar): "
        f"{total / decode_cpu:,.0f} samples/s per CPU-second "
        f"({len(requests)} requests, {decode_cpu:.2f} s); exact decoder (a Sample object per sample): "
        f"{total / exact_cpu:,.0f} ({exact_cpu / decode_cpu:.1f}x the time)"
    )
    inflate_cpu = _inflate(requests)
    print(
        f"gzip inflate of the same bodies (HTTP route, before decode; not in the figures below): "
        f"{total / inflate_cpu:,.0f} samples/s per CPU-second"
    )
    group = args.group or args.hosts
    one = open_store(data_dir, database="bench_ingest_single", fsync=args.fsync)
    singles = profiles[: max(len(profiles) // 10, 1)]
    t = time.perf_counter()
    for profile, batch in singles:
        one.ingest(profile, batch)
    single_rate = sum(p.total for p, _ in singles) / (time.perf_counter() - t)
    one.close()
    print(f"Store.ingest, one batch per call: {single_rate:,.0f} samples/s ({len(singles)} batches)")
    copies = open_store(data_dir, database="bench_ingest_copies", fsync=args.fsync)
    copies_s, copies_cpu = _ingest_all(copies, synthetic, group)
    copies.close()
    print(
        f"Store.ingest_many of per-request objects (nothing shared across requests): "
        f"{total / copies_s:,.0f} samples/s ({total / copies_cpu:,.0f} per CPU-second)"
    )
    store = open_store(data_dir, database="bench_ingest", fsync=args.fsync)
    store_s, store_cpu = _ingest_all(store, profiles, group)
    store_rate = total / store_s
    print(
        f"Store.ingest_many, {group} batches per call: {total:,} samples from {args.hosts} hosts in "
        f"{store_s:.2f} s, {store_rate:,.0f} samples/s ({total / store_cpu:,.0f} per CPU-second, "
        f"{store_cpu:.2f} s of CPU)"
    )

    end_to_end_cpu = total / (decode_cpu + store_cpu)
    end_to_end_wall = total / (decode_s + store_s)
    print(
        f"end-to-end (OTLP protobuf bytes -> decoded -> stored, the server's work per request): "
        f"{end_to_end_cpu:,.0f} samples per CPU-second, {end_to_end_wall:,.0f} per wall second "
        f"(with gzip inflate: {total / (decode_cpu + store_cpu + inflate_cpu):,.0f} per CPU-second)"
    )
    rows = build_group([p for p, _ in profiles], IdCache(), 0).samples.combine_chunks()
    store.backend.execute(
        f"CREATE TABLE IF NOT EXISTS bench_ingest.bare AS {store.t('samples')} "
        f"ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY {schema.SAMPLES.order_by}"
    )
    t = time.perf_counter()
    store.backend.insert("bench_ingest.bare", rows)
    bare_s = time.perf_counter() - t
    bare_rate = total / bare_s
    print(
        f"bare bulk INSERT of the same {rows.num_rows:,} rows ({total:,} samples counted per second): "
        f"{bare_s:.2f} s, {bare_rate:,.0f} samples/s"
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
        f"end-to-end ingest {end_to_end_cpu:,.0f} samples per CPU-second ({end_to_end_wall:,.0f}/s wall; "
        f"decode + store of OTLP protobuf bytes, gzip removed) on the embedded store, group commit; store "
        f"alone {store_rate:,.0f} samples/s ({store_rate / bare_rate:.2f}x a bare bulk INSERT; "
        f"{single_rate:,.0f}/s one batch per call), {per_sample:.2f} bytes/sample, {per_core_day:.1f} MB per "
        "core-day at 20 Hz"
    )


if __name__ == "__main__":
    main()
