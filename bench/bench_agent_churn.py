"""The agent through an hour of process churn (issue 9): `fleetprof agent` (fleet mode, whole host, 20 Hz) to
an in-process collector that counts samples, while short-lived processes (C without frame pointers,
`python3 -c`, `sh -c` pipelines) start at a steady rate, distinct new binaries keep appearing and one CPU
burner runs throughout. Every interval it records the agent's RSS (its own and its table workers'), open
fds, threads, BPF map entries of the maps that grow per process or file, and CPU %; `perf record -a -g` runs
alongside as the peer. The end prints a table per 10 minutes, slopes over the last half and the headline.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gzip
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
    ExportProfilesServiceResponse,
)

from fleetprof.bpf import libbpf
from fleetprof.elf.reader import read_elf_info

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import holds_perf_events  # noqa: E402
from bench_agent_fleet import BURN_C, CHURN_SH, PERF, agent_argv, tree, tree_cpu_s, tree_rss_mb  # noqa: E402
from zoo.build import record_env  # noqa: E402

BPFTOOL = shutil.which("bpftool")
# Hash-type maps whose entries come with processes and files (arrays are full by construction).
GROWING_MAPS = (
    "known_pids",
    "reported_pids",
    "forked_from",
    "mappings",
    "file_tables",
    "file_inodes",
    "vma_cache",
    "interp_ranges",
)
SHORT_NAMES = {
    "known_pids": "known",
    "reported_pids": "reported",
    "forked_from": "forked",
    "mappings": "mappings",
    "file_tables": "tables",
    "file_inodes": "inodes",
    "vma_cache": "vma",
    "interp_ranges": "interp",
}
SPIN_C = r"""
#include <stdlib.h>
__attribute__((noinline)) static unsigned long spin_leaf(long n) {
    volatile unsigned long x = 0;
    for (long i = 0; i < n; i++) x += (unsigned long)i * 3;
    return x;
}
__attribute__((noinline)) static unsigned long spin_mid(long n) { return spin_leaf(n) + 1; }
int main(int argc, char **argv) { return (int)(spin_mid(argc > 1 ? atol(argv[1]) : 100000) & 1); }
"""
PY_SHORT = "def f(n):\n    return sum(i * i for i in range(n))\nf(20000)"
BUILD_ID_NOTE = 3  # NT_GNU_BUILD_ID


# ---- the collector ---------------------------------------------------------------------------------------


@dataclass
class Counts:
    """What the local collector received, as counts: batches, samples in them, symbol bundles."""

    posts: int = 0
    bad_posts: int = 0
    samples: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    have: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


def count_samples(body: bytes, encoding: str) -> int:
    """Samples in one OTLP/HTTP request: timestamps per sample, or its count value when untimed."""
    request = ExportProfilesServiceRequest()
    request.ParseFromString(gzip.decompress(body) if encoding == "gzip" else body)
    total = 0
    for rp in request.resource_profiles:
        for sp in rp.scope_profiles:
            for profile in sp.profiles:
                for s in profile.samples:
                    total += len(s.timestamps_unix_nano) or (s.values[0] if s.values else 0)
    return total


def _handler(counts: Counts) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/api/v1/symbols/missing":
                with counts.lock:
                    missing = [f for f in json.loads(body) if f not in counts.have]
                self._answer(json.dumps(missing).encode())
                return
            try:
                n = count_samples(body, self.headers.get("Content-Encoding", ""))
            except (OSError, ValueError, EOFError):
                n = -1
            with counts.lock:
                counts.posts += 1
                counts.bad_posts += n < 0
                counts.samples += max(n, 0)
            self._answer(ExportProfilesServiceResponse().SerializeToString())

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with counts.lock:
                counts.have.add(self.path.rsplit("/", 1)[-1])
                counts.uploads += 1
                counts.upload_bytes += len(body)
            self._answer(b"{}")

    return Handler


@contextlib.contextmanager
def collector() -> Iterator[tuple[str, Counts]]:
    """An OTLP/HTTP collector on 127.0.0.1 that counts samples and asks for every symbol file once."""
    counts = Counts()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(counts))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", counts
    finally:
        server.shutdown()
        server.server_close()


# ---- the churn ---------------------------------------------------------------------------------------------


def build(work: Path, source: str, name: str, *flags: str) -> Path:
    """Compile C `source` to work/name with gcc and `flags`."""
    src = work / f"{name}.c"
    src.write_text(source)
    out = work / name
    done = subprocess.run(["gcc", *flags, "-o", str(out), str(src)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"gcc {name}: {done.stderr.strip()[:500]}")
    return out


class Churn:
    """One long-lived CPU burner, short-lived processes at `rate`/s and a new distinct binary at
    `new_rate`/s (half with a fresh build id, half without one and a distinct trailer)."""

    def __init__(self, work: Path, rate: float, new_rate: float, spin_iters: int, new_iters: int) -> None:
        nofp = ("-O2", "-fomit-frame-pointer", "-fno-asynchronous-unwind-tables")
        self.spin = build(work, SPIN_C, "spin", *nofp)
        self.spin_bid = build(work, SPIN_C, "spin_bid", "-O2", "-fomit-frame-pointer", "-Wl,--build-id=sha1")
        self.spin_nobid = build(
            work, SPIN_C, "spin_nobid", "-O2", "-fomit-frame-pointer", "-Wl,--build-id=none"
        )
        burn = build(work, BURN_C, "burn", "-O1", "-g")
        self.bid = bytes.fromhex(read_elf_info(str(self.spin_bid)).build_id or "")
        self.work = work
        self.rate, self.new_rate = rate, new_rate
        self.spin_iters, self.new_iters = spin_iters, new_iters
        self.burner = subprocess.Popen([str(burn), "86400"])
        self.short_started = 0
        self.new_started = 0
        self.failed = 0
        self.error = ""  # why the churn thread stopped early, when it did
        self._rng = random.Random(9)
        self._live: list[tuple[subprocess.Popen[bytes], Path | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _kinds(self) -> list[list[str]]:
        return [
            [str(self.spin), str(self.spin_iters)],
            ["sh", "-c", CHURN_SH],
            [str(self.spin), str(self.spin_iters)],
            ["sh", "-c", f"{self.spin} {self.spin_iters} | cat | wc -c >/dev/null"],
            ["python3", "-c", PY_SHORT],
        ]

    def new_binary(self, n: int) -> Path:
        """A copy of the spin program no one has run: a fresh build id, or no build id and its own trailer."""
        dst = self.work / f"new{n}"
        if n % 2 == 0 and self.bid:
            data = self.spin_bid.read_bytes().replace(self.bid, self._rng.randbytes(len(self.bid)), 1)
            dst.write_bytes(data)
        else:
            data = self.spin_nobid.read_bytes() + f"copy {n}".encode().ljust(4096, b"\0")
            dst.write_bytes(data)
        dst.chmod(0o755)
        return dst

    def _start(self, argv: list[str], path: Path | None) -> None:
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:
            self.failed += 1
            return
        self._live.append((proc, path))

    def _reap(self) -> None:
        keep = []
        for proc, path in self._live:
            if proc.poll() is None:
                keep.append((proc, path))
            elif path is not None:
                path.unlink(missing_ok=True)  # the agent meets it no more once it has exited
        self._live = keep

    def _run(self) -> None:
        try:
            self._loop()
        except Exception as exc:  # the bench reports it and stops
            self.error = f"{type(exc).__name__}: {exc}"

    def _loop(self) -> None:
        """Start processes on schedule, reap them, delete the new binaries that have run."""
        kinds = self._kinds()
        now = time.monotonic()
        next_short, next_new = now, now
        while not self._stop.is_set():
            now = time.monotonic()
            if self.rate > 0 and now >= next_short:
                self._start(kinds[self.short_started % len(kinds)], None)
                self.short_started += 1
                next_short = max(next_short + 1.0 / self.rate, now - 1.0)  # no catch-up bursts after a stall
            if self.new_rate > 0 and now >= next_new:
                path = self.new_binary(self.new_started)
                self._start([str(path), str(self.new_iters)], path)
                self.new_started += 1
                next_new = max(next_new + 1.0 / self.new_rate, now - 1.0)
            self._reap()
            wait = min(next_short if self.rate > 0 else now + 1, next_new if self.new_rate > 0 else now + 1)
            self._stop.wait(max(0.0, min(wait - time.monotonic(), 0.05)))

    def close(self) -> None:
        """Stop starting processes, wait for the live ones, kill the burner."""
        self._stop.set()
        self._thread.join()
        for proc, _ in self._live:
            proc.kill()
            proc.wait()
        self._reap()
        self.burner.kill()
        self.burner.wait()


# ---- measuring ---------------------------------------------------------------------------------------------


def fd_count(pid: int) -> int:
    """Open fds of `pid` and its descendants."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def thread_count(pid: int) -> int:
    """Threads of `pid` and its descendants."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{p}/task"))
    return total


def map_fdinfo(pid: int) -> dict[int, int]:
    """Map id -> key size of the BPF maps `pid` holds open, from its fds' fdinfo."""
    out: dict[int, int] = {}
    base = Path(f"/proc/{pid}/fdinfo")
    with contextlib.suppress(OSError):
        for fd in os.listdir(base):
            with contextlib.suppress(OSError):
                text = (base / fd).read_text()
                mid, key = (
                    re.search(r"^map_id:\s*(\d+)", text, re.M),
                    re.search(r"^key_size:\s*(\d+)", text, re.M),
                )
                if mid and key:
                    out[int(mid.group(1))] = int(key.group(1))
    return out


def count_entries(map_id: int, key_size: int, bound: int = 1 << 20) -> int:
    """Entries of a BPF map by walking its keys (BPF_MAP_GET_NEXT_KEY through libbpf); -1 when it cannot
    be opened. Far cheaper than `bpftool map dump`, which formats every entry."""
    so = libbpf.lib()
    so.bpf_map_get_fd_by_id.argtypes, so.bpf_map_get_fd_by_id.restype = [ctypes.c_uint32], ctypes.c_int
    so.bpf_map_get_next_key.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    so.bpf_map_get_next_key.restype = ctypes.c_int
    fd = so.bpf_map_get_fd_by_id(map_id)
    if fd < 0:
        return -1
    try:
        keys = [ctypes.create_string_buffer(key_size), ctypes.create_string_buffer(key_size)]
        n, prev = 0, None
        while n < bound and so.bpf_map_get_next_key(fd, prev, keys[n % 2]) == 0:
            prev = keys[n % 2]
            n += 1
        return n
    finally:
        os.close(fd)


class MapCounter:
    """Entry counts of the agent's growing maps; their names from `bpftool map show` once per map."""

    def __init__(self) -> None:
        self.names: dict[int, str] = {}

    def _name(self, map_id: int) -> str:
        if map_id not in self.names:
            done = subprocess.run(
                [str(BPFTOOL), "-j", "map", "show", "id", str(map_id)], capture_output=True, text=True
            )
            try:
                self.names[map_id] = json.loads(done.stdout).get("name", "")
            except ValueError:
                self.names[map_id] = ""
        return self.names[map_id]

    def counts(self, pid: int) -> dict[str, int]:
        """Map name -> entries for the growing maps `pid` holds; empty without bpftool."""
        out: dict[str, int] = {}
        if BPFTOOL is None:
            return out
        for map_id, key_size in sorted(map_fdinfo(pid).items()):
            name = self._name(map_id)
            if name in GROWING_MAPS:
                out[name] = count_entries(map_id, key_size)
        return out


@dataclass(slots=True)
class Point:
    """One measurement of the agent (and the peer) `t` seconds after the agent began sampling."""

    t: float
    rss: float
    workers_rss: float
    fds: int
    threads: int
    maps: dict[str, int]
    cpu_pct: float
    samples: int
    uploads: int
    started: int
    new_binaries: int
    perf_rss: float
    perf_cpu_pct: float

    @property
    def total_rss(self) -> float:
        """The agent's RSS with its workers'."""
        return self.rss + self.workers_rss


class Watch:
    """Takes a Point of the agent and perf every time `take` is called."""

    def __init__(self, agent: int, perf: int | None, counts: Counts, churn: Churn) -> None:
        self.agent, self.perf, self.counts, self.churn = agent, perf, counts, churn
        self.maps = MapCounter()
        self.t0 = time.monotonic()
        self._last = (self.t0, tree_cpu_s(agent), tree_cpu_s(perf) if perf else 0.0)

    def take(self) -> Point:
        """The sizes now and the CPU % since the previous point."""
        now, cpu, pcpu = time.monotonic(), tree_cpu_s(self.agent), tree_cpu_s(self.perf) if self.perf else 0.0
        t_prev, cpu_prev, pcpu_prev = self._last
        self._last = (now, cpu, pcpu)
        wall = max(now - t_prev, 1e-9)
        own, workers = tree_rss_mb(self.agent)
        perf_rss = sum(tree_rss_mb(self.perf)) if self.perf else float("nan")
        with self.counts.lock:
            samples, uploads = self.counts.samples, self.counts.uploads
        return Point(
            t=now - self.t0,
            rss=own,
            workers_rss=workers,
            fds=fd_count(self.agent),
            threads=thread_count(self.agent),
            maps=self.maps.counts(self.agent),
            cpu_pct=100 * (cpu - cpu_prev) / wall,
            samples=samples,
            uploads=uploads,
            started=self.churn.short_started,
            new_binaries=self.churn.new_started,
            perf_rss=perf_rss,
            perf_cpu_pct=100 * (pcpu - pcpu_prev) / wall if self.perf else float("nan"),
        )


# ---- reporting ---------------------------------------------------------------------------------------------


def slope_per_hour(points: list[Point], value: str) -> float:
    """Least-squares slope of attribute `value` against time, per hour; nan with fewer than two points."""
    if len(points) < 2:
        return float("nan")
    xs = [p.t / 3600 for p in points]
    ys = [float(getattr(p, value)) for p in points]
    return statistics.linear_regression(xs, ys).slope


def map_slope_per_hour(points: list[Point], name: str) -> float:
    """Least-squares slope of one map's entry count, per hour."""
    have = [p for p in points if name in p.maps]
    if len(have) < 2:
        return float("nan")
    return statistics.linear_regression([p.t / 3600 for p in have], [p.maps[name] for p in have]).slope


def row(p: Point, prev: Point | None, names: list[str]) -> str:
    """One line of the table."""
    dt = p.t - prev.t if prev else p.t
    rate = (p.samples - (prev.samples if prev else 0)) / dt if dt > 0 else float("nan")
    cells = [
        f"{p.t / 60:6.1f}",
        f"{p.rss:7.1f}",
        f"{p.workers_rss:7.1f}",
        f"{p.fds:5d}",
        f"{p.threads:4d}",
        *(f"{p.maps.get(n, -1):>{max(len(SHORT_NAMES[n]), 6)}d}" for n in names),
        f"{p.cpu_pct:6.2f}",
        f"{rate:7.1f}",
        f"{p.uploads:6d}",
        f"{p.started:7d}",
        f"{p.new_binaries:5d}",
        f"{p.perf_rss:7.1f}",
        f"{p.perf_cpu_pct:6.2f}",
    ]
    return " ".join(cells)


def header(names: list[str]) -> str:
    """Column names of the table."""
    cols = [
        f"{'min':>6s}",
        f"{'RSS MB':>7s}",
        f"{'wrk MB':>7s}",
        f"{'fds':>5s}",
        f"{'thr':>4s}",
        *(f"{SHORT_NAMES[n]:>{max(len(SHORT_NAMES[n]), 6)}s}" for n in names),
        f"{'CPU%':>6s}",
        f"{'smp/s':>7s}",
        f"{'upl':>6s}",
        f"{'procs':>7s}",
        f"{'bins':>5s}",
        f"{'perfMB':>7s}",
        f"{'perf%':>6s}",
    ]
    return " ".join(cols)


def window_mean(points: list[Point], lo: float, hi: float, value: str) -> float:
    """Mean of attribute `value` over the points with lo <= t <= hi."""
    got = [float(getattr(p, value)) for p in points if lo <= p.t <= hi]
    return statistics.fmean(got) if got else float("nan")


def report(args: argparse.Namespace, points: list[Point], counts: Counts, perf_ok: bool) -> None:
    """The table per `step`, slopes over the last half, level-off verdicts and the headline."""
    names = [n for n in GROWING_MAPS if any(n in p.maps for p in points)]
    end = points[-1].t
    step = 600.0 if end >= 1800 else max(end / 6, args.every)
    print()
    print(
        f"agent through {end / 60:.1f} min of churn at {args.frequency} Hz, {os.cpu_count()} CPUs: "
        f"{args.rate:g} short-lived processes/s ({points[-1].started / end:.1f}/s achieved), "
        f"{args.new_rate:g} new binaries/s, 1 CPU burner; "
        f"every {step / 60:.1f} min (RSS = agent process, wrk = its table workers; map columns = entries)"
    )
    print(header(names))
    chosen, k = [points[0]], 1
    for p in points[1:]:
        if p.t >= k * step - args.every / 2:
            chosen.append(p)
            k = int((p.t + args.every / 2) // step) + 1
    if chosen[-1] is not points[-1]:
        chosen.append(points[-1])
    prev: Point | None = None
    for p in chosen:
        print(row(p, prev, names))
        prev = p
    last_half = [p for p in points if p.t >= end / 2]
    print(
        f"collector: {counts.posts} batches ({counts.bad_posts} undecodable), {counts.samples} samples, "
        f"{counts.uploads} symbol bundles ({counts.upload_bytes / 2**20:.1f} MiB)"
    )
    print(f"slopes over the last half ({last_half[0].t / 60:.0f}-{end / 60:.0f} min), per hour:")
    rss_slope = slope_per_hour(last_half, "total_rss")
    print(
        f"  agent RSS {slope_per_hour(last_half, 'rss'):+.1f} MB/h, workers "
        f"{slope_per_hour(last_half, 'workers_rss'):+.1f} MB/h, total {rss_slope:+.1f} MB/h"
    )
    print(
        f"  fds {slope_per_hour(last_half, 'fds'):+.1f}/h, "
        f"threads {slope_per_hour(last_half, 'threads'):+.1f}/h"
    )
    if names:
        print("  map entries: " + ", ".join(f"{n} {map_slope_per_hour(last_half, n):+.0f}/h" for n in names))
    elif BPFTOOL is None:
        print("  map entries: bpftool is not installed (apt-get install bpftool)")
    if perf_ok:
        print(f"  perf record -a -g RSS {slope_per_hour(last_half, 'perf_rss'):+.1f} MB/h")
    span = min(300.0, end / 3)  # the first and last 5 min; a third each of a shorter run
    first5 = window_mean(points, 0, span, "total_rss")
    last5 = window_mean(points, end - span, end, "total_rss")
    print(
        f"agent RSS (+workers) first {span / 60:.1f} min {first5:.1f} MB, last {span / 60:.1f} min "
        f"{last5:.1f} MB: ratio {last5 / first5:.2f}"
    )
    print(
        f"agent CPU: mean {window_mean(points, 0, end, 'cpu_pct'):.2f}% of one core over the run, "
        f"last half {window_mean(points, end / 2, end, 'cpu_pct'):.2f}%"
        + (f"; perf record -a -g {window_mean(points, 0, end, 'perf_cpu_pct'):.2f}%" if perf_ok else "")
    )
    final = points[-1]
    near5 = [p for p in points if p.t <= 300 + args.every / 2] or points[:1]
    at5 = near5[-1]  # the point at minute 5 (or the latest before it)
    if perf_ok:
        peer = f"perf record -a -g: {final.perf_rss:.0f} MB (min {at5.t / 60:.0f}: {at5.perf_rss:.0f} MB)"
    else:
        peer = f"no perf peer ({PERF} missing or it failed); last/first RSS ratio {last5 / first5:.2f}"
    print(
        f"agent RSS after {end / 60:.0f} min: {final.total_rss:.0f} MB "
        f"(min {at5.t / 60:.0f}: {at5.total_rss:.0f} MB, slope {rss_slope:+.1f} MB/h); {peer}"
    )


# ---- main -------------------------------------------------------------------------------------------------


def start_perf(hz: int) -> subprocess.Popen[bytes] | None:
    """`perf record -a -g` writing to /dev/null (its RSS: its own tables and ring buffers); None without
    perf."""
    if not Path(PERF).exists():
        return None
    argv = [PERF, "record", "-q", "-a", "-g", "--no-buildid", "-F", str(hz), "-o", "/dev/null"]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(proc: subprocess.Popen[str] | subprocess.Popen[bytes] | None, sig: int) -> str:
    """Stop a profiler; its stderr when it was captured."""
    if proc is None:
        return ""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        out = proc.communicate(timeout=120)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out = proc.communicate()[1]
    return out if isinstance(out, str) else ""


def wait_sampling(agent: subprocess.Popen[str], timeout: float) -> None:
    """Until the agent holds perf events open; a clear error when it exits or takes too long."""
    end = time.monotonic() + timeout
    while not holds_perf_events(agent.pid):
        if agent.poll() is not None:
            raise RuntimeError(f"the agent exited: {agent.communicate()[1][-2000:]}")
        if time.monotonic() > end:
            raise RuntimeError(f"the agent did not start sampling within {timeout:g} s")
        time.sleep(0.1)


def run(args: argparse.Namespace, work: Path) -> int:
    """Churn, agent, perf; a point every `args.every` s for `args.duration` s; then the report."""
    churn = Churn(work, args.rate, args.new_rate, args.spin_iters, args.new_iters)
    agent: subprocess.Popen[str] | None = None
    perf: subprocess.Popen[bytes] | None = None
    points: list[Point] = []
    agent_err = ""
    try:
        with collector() as (url, counts):
            argv = agent_argv(url, args.frequency, work / "spool")
            agent = subprocess.Popen(
                argv,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
                env=record_env(work / "cache"),
                start_new_session=True,
            )
            began = time.monotonic()
            wait_sampling(agent, 600)
            print(f"agent sampling after {time.monotonic() - began:.1f} s (pid {agent.pid})", flush=True)
            perf = None if args.no_perf else start_perf(args.frequency)
            watch = Watch(agent.pid, perf.pid if perf else None, counts, churn)
            names = list(GROWING_MAPS)
            print(header(names), flush=True)
            while watch.t0 + args.duration - time.monotonic() > 1:
                time.sleep(min(args.every, max(0.0, watch.t0 + args.duration - time.monotonic())))
                if churn.error:
                    print(f"the churn stopped: {churn.error}")
                    break
                if agent.poll() is not None:
                    print(
                        f"the agent exited (status {agent.returncode}) at {time.monotonic() - watch.t0:.0f} s"
                    )
                    break
                points.append(watch.take())
                print(row(points[-1], points[-2] if len(points) > 1 else None, names), flush=True)
            perf_ok = perf is not None and perf.poll() is None
            stop(perf, signal.SIGINT)
            agent_err = stop(agent, signal.SIGTERM)
            if agent_err.strip():
                print("agent stderr (tail):\n" + agent_err.strip()[-3000:])
            if not points:
                print("no measurement was taken")
                return 1
            report(args, points, counts, perf_ok)
    finally:
        for proc, sig in ((perf, signal.SIGKILL), (agent, signal.SIGKILL)):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, sig)
                proc.wait()
        churn.close()
    return 0


def main() -> int:
    """Parse the options, run in a temp dir, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=3600.0, help="seconds of churn after the agent samples"
    )
    parser.add_argument(
        "--every", type=float, default=0.0, help="seconds between points (default 60, less when short)"
    )
    parser.add_argument("--frequency", type=int, default=20, help="samples per second per CPU")
    parser.add_argument("--rate", type=float, default=20.0, help="short-lived processes per second")
    parser.add_argument(
        "--new-rate", type=float, default=0.5, help="new distinct binaries started per second"
    )
    parser.add_argument("--spin-iters", type=int, default=2_000_000, help="loop count of a short C process")
    parser.add_argument("--new-iters", type=int, default=20_000_000, help="loop count of a new binary's run")
    parser.add_argument("--no-perf", action="store_true", help="leave out the perf record -a -g peer")
    args = parser.parse_args()
    if args.duration <= 0 or args.rate < 0 or args.new_rate < 0:
        print("error: --duration must be > 0 and the rates >= 0", file=sys.stderr)
        return 2
    if args.every <= 0:
        args.every = min(60.0, max(5.0, args.duration / 12))
    if shutil.which("gcc") is None:
        print("error: gcc is needed to build the churn programs", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="fleetprof-bench-churn-"))
    try:
        return run(args, work)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
