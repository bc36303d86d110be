"""A simulated fleet of 1,000 hosts ingesting through the server's real OTLP path into the embedded store:
the evidence for docs/SCALING.md.

Each host has its own identity (name, machine id, kernel, core count) and runs one of a few services whose
processes draw stacks from that service's pool (realistic shapes, src/fleetprof/store/synthetic.py), so
hosts of one service share stacks the way a real fleet does. Every host sends one 5-second batch per round
(its cores at 20 Hz times its utilization), encoded and gzip'd as the agent sends it; batches are built
before timing. The timed part is the server's: `inflate` + `Ingestor.ingest_bytes` (protobuf parse, OTLP
decode, merge per host, group commit into `Store.ingest_many`) called from a pool of request threads as
HTTP/gRPC workers do. Peers in the same run: the same kind of requests ingested one at a time from a
single thread (no grouping: what every request cost before group commit), and a bare bulk INSERT of the
same sample rows. Then bytes stored per sample and per core-day, and fleet-wide and per-host queries.

    .venv/bin/python bench/bench_fleet_sim.py [--hosts 1000] [--rounds 3] [--threads 32] [--services 6]
"""

from __future__ import annotations

import argparse
import gzip
import random
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fleetprof.output.otlp import to_otlp_request
from fleetprof.profile.model import Profile
from fleetprof.query import Selection, flame_graph, top_functions
from fleetprof.server.ingest import Ingestor, inflate
from fleetprof.store import open_store, schema
from fleetprof.store.rows import IdCache, build_group
from fleetprof.store.synthetic import StackPool, fleet_profile

WINDOW_NS = 5 * 10**9
CORE_DAY_SAMPLES = 20 * 86_400
MAX_BODY = 64 << 20


def host_profile(pools: list[StackPool], host: int, start_ns: int, seed: int) -> Profile:
    """One 5-second batch of host `host`: its service's stacks, its cores x 20 Hz x its utilization."""
    rng = random.Random(host * 7919 + 17)
    cores = rng.choice((4, 8, 8, 16, 32))
    busy = rng.uniform(0.2, 0.7)
    samples = max(int(cores * 20 * 5 * busy), 1)
    profile = fleet_profile(pools[host % len(pools)], f"host-{host:05d}", start_ns, samples, seed=seed)
    profile.kernel_release = rng.choice(("6.1.0-18-amd64", "6.8.0-45-generic", "5.15.0-119-generic"))
    profile.resource = {
        "host.name": f"host-{host:05d}",
        "host.id": f"{host:08x}{rng.getrandbits(96):024x}",
        "host.cpu.count": cores,
        "host.arch": "amd64",
        "os.type": "linux",
        "os.version": profile.kernel_release,
        "fleetprof.agent.version": "0.1.0",
    }
    return profile


def encode(profile: Profile) -> bytes:
    """The request body the agent sends: an OTLP ExportProfilesServiceRequest, gzip'd."""
    return gzip.compress(to_otlp_request(profile).SerializeToString(), 1)


def ingest_all(ingestor: Ingestor, bodies: list[tuple[bytes, str]], threads: int) -> tuple[float, float]:
    """Send every body through the ingest path from `threads` request threads; (wall s, CPU s)."""

    def one(item: tuple[bytes, str]) -> int:
        body, batch = item
        return ingestor.ingest_bytes(inflate(body, "gzip", MAX_BODY), batch).samples

    t, cpu = time.perf_counter(), time.process_time()
    if threads <= 1:
        for item in bodies:
            one(item)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(one, bodies))
    return time.perf_counter() - t, time.process_time() - cpu


def timed(fn, repeat: int = 3) -> float:
    """Median seconds of `repeat` runs."""
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    """Build the fleet's requests, ingest them grouped and one by one, then measure storage and queries."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3, help="5-second batches per host")
    ap.add_argument("--threads", type=int, default=32, help="concurrent request threads")
    ap.add_argument("--services", type=int, default=6, help="distinct software stacks in the fleet")
    ap.add_argument("--stacks", type=int, default=4000, help="distinct stacks per service")
    ap.add_argument("--single", type=int, default=200, help="requests for the one-at-a-time peer")
    ap.add_argument("--data-dir", type=Path, default=None)
    args = ap.parse_args()
    tmp = tempfile.TemporaryDirectory(prefix="fleetprof-bench-fleet-sim-")
    data_dir = args.data_dir or Path(tmp.name)
    t = time.perf_counter()
    pools = [StackPool.build(args.stacks, seed=100 + s) for s in range(args.services)]
    start = (time.time_ns() - (args.rounds + 1) * WINDOW_NS) // WINDOW_NS * WINDOW_NS
    profiles = [
        (host_profile(pools, h, start + r * WINDOW_NS, seed=r), f"sim-{h}-{r}")
        for r in range(args.rounds)
        for h in range(args.hosts)
    ]
    bodies = [(encode(p), b) for p, b in profiles]
    total = sum(p.total for p, _ in profiles)
    wire = sum(len(b) for b, _ in bodies)
    print(
        f"{args.hosts:,} hosts x {args.rounds} rounds: {len(bodies):,} requests, {total:,} samples, "
        f"{wire / len(bodies) / 1e3:.1f} kB gzip'd per request, built in {time.perf_counter() - t:.1f} s"
    )

    store = open_store(data_dir, database="fleet_sim")
    ingestor = Ingestor(store)
    wall, cpu = ingest_all(ingestor, bodies, args.threads)
    rate = total / wall
    print(
        f"grouped ingest, {args.threads} request threads: {wall:.2f} s, {rate:,.0f} samples/s, "
        f"{len(bodies) / wall:,.0f} requests/s ({total / cpu:,.0f} samples per CPU-second); "
        f"{ingestor.group.groups:,} group commits for {ingestor.group.requests:,} requests"
    )

    one = open_store(data_dir, database="fleet_sim_single")
    single_bodies = [(b, f"single-{i}") for i, (b, _) in enumerate(bodies[: args.single])]
    single_samples = sum(p.total for p, _ in profiles[: args.single])
    s_wall, _ = ingest_all(Ingestor(one), single_bodies, 1)
    single_rate = single_samples / s_wall
    print(
        f"one request at a time (no grouping), {len(single_bodies)} requests: {single_rate:,.0f} samples/s, "
        f"{len(single_bodies) / s_wall:,.0f} requests/s"
    )
    one.close()

    rows = build_group([p for p, _ in profiles], IdCache(), 0).samples.combine_chunks()
    store.backend.execute(
        f"CREATE TABLE IF NOT EXISTS fleet_sim.bare AS {store.t('samples')} "
        f"ENGINE = MergeTree PARTITION BY toDate(ts) ORDER BY {schema.SAMPLES.order_by}"
    )
    t = time.perf_counter()
    store.backend.insert("fleet_sim.bare", rows)
    bare_rate = total / (time.perf_counter() - t)
    print(f"bare bulk INSERT of the same {rows.num_rows:,} rows: {bare_rate:,.0f} samples/s")

    store.optimize()
    for table in ("samples", "stacks", "frames", "executables"):
        store.backend.execute(f"OPTIMIZE TABLE {store.t(table)} FINAL")
    parts = store.query(
        "SELECT table, sum(data_compressed_bytes) AS b FROM system.parts "
        "WHERE database = 'fleet_sim' AND active AND table != 'bare' GROUP BY table ORDER BY b DESC"
    ).to_pylist()
    by_table = {p["table"]: p["b"] for p in parts}
    stored = sum(by_table.values())
    rowwise = (by_table.get("samples", 0) + by_table.get("samples_sampled", 0)) / total
    per_sample = stored / total
    print(
        "bytes by table: "
        + ", ".join(f"{name} {b / total:.2f}/sample" for name, b in by_table.items() if b / total >= 0.005)
    )
    print(
        f"stored: {per_sample:.2f} bytes/sample ({rowwise:.2f} in sample rows, raw + sampled; the rest is "
        f"stacks and frames, met once per week), {per_sample * CORE_DAY_SAMPLES / 1e6:.1f} MB per core-day"
    )

    window = Selection(start, start + (args.rounds + 1) * WINDOW_NS)
    one_host = Selection(window.start_ns, window.end_ns, {"host": ["host-00007"]})
    lat = {
        "fleet flame graph": timed(lambda: flame_graph(store, window)),
        "fleet top functions": timed(lambda: top_functions(store, window)),
        "one host's flame graph": timed(lambda: flame_graph(store, one_host)),
    }
    print("queries over the whole run: " + ", ".join(f"{k} {v:.3f} s" for k, v in lat.items()))
    host_total = flame_graph(store, one_host, min_fraction=0, max_nodes=0)["total"]
    expected = sum(p.total for p, _ in profiles if p.hostname == "host-00007")
    assert host_total == expected, (host_total, expected)
    store.close()
    tmp.cleanup()
    print(
        f"fleet of {args.hosts:,} hosts: {rate:,.0f} samples/s through the OTLP ingest path "
        f"({len(bodies) / wall:,.0f} requests/s, {rate / single_rate:.1f}x one request at a time, "
        f"{rate / bare_rate:.2f}x a bare bulk INSERT), {per_sample:.2f} bytes/sample, "
        f"{per_sample * CORE_DAY_SAMPLES / 1e6:.1f} MB per core-day, "
        f"fleet flame graph {lat['fleet flame graph']:.2f} s"
    )


if __name__ == "__main__":
    main()
