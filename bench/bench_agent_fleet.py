"""Agent cost at 20 Hz, whole host, fleet mode: `fleetprof agent` (to a local sink collector) against
`fleetprof record --all` and `perf record -a -g`, one after the other on the same background load (C and
Python CPU burners plus short-lived process churn). Each profiler's CPU (its threads and worker processes,
from /proc/PID/stat) is split into startup (until it samples, plus a warm-up) and steady state; its BPF
programs' run time is read from /proc/PID/fdinfo. Then the agent keeps running through a churn phase and its
RSS (its own and its workers') is taken at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import bpf_stats, holds_perf_events, sampling_run_time  # noqa: E402
from zoo.build import fleetprof_command, record_env  # noqa: E402

PERF = "/usr/bin/perf"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
NCPU = os.cpu_count() or 1
UPLOAD_QUIET_S = 15.0  # the agent's startup lasts until its symbol uploads have stopped this long
UPLOAD_STUCK_S = (
    120.0  # ... and every file the collector asked for arrived (one asked this long ago is given up)
)
SETTLE_MAX_S = 240.0  # ... or this long has passed (other processes on the host keep bringing new files)
BURN_C = r"""
#include <stdlib.h>
#include <time.h>
__attribute__((noinline)) static unsigned long burn_leaf(unsigned long n) {
    volatile unsigned long x = 0;
    for (unsigned long i = 0; i < n; i++) x += i * i;
    return x;
}
__attribute__((noinline)) static unsigned long burn_mid(unsigned long n) { return burn_leaf(n) + 1; }
int main(int argc, char **argv) {
    time_t end = time(0) + (argc > 1 ? atol(argv[1]) : 3600);
    while (time(0) < end) burn_mid(2000000);
    return 0;
}
"""
BURN_PY = """
import sys, time
def leaf(n):
    return sum(i * i for i in range(n))
def mid(n):
    return leaf(n) + 1
end = time.time() + float(sys.argv[1])
while time.time() < end:
    mid(20000)
"""
CHURN_SH = "x=$(echo churn | tr a-z A-Z); ls /proc/self/fd >/dev/null; echo $x >/dev/null"


# ---- measuring a process tree ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's children)."""
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        with contextlib.suppress(OSError):
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
    return out


def tree(pid: int) -> list[int]:
    """`pid` and its descendants (the agent's table-compiling workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += _children(p)
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of `pid` and its live descendants, each with the children it has reaped
    (utime+stime+cutime+cstime)."""
    total = 0
    for p in tree(pid):
        f = _stat_fields(p)
        if f is not None:
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / TICK


def python_thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from one `py-spy dump` (empty without py-spy)."""
    spy = Path(sys.executable).with_name("py-spy")
    if not spy.exists():
        return {}
    try:
        out = subprocess.run(
            [str(spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r'^Thread (\d+) \(\w+\): "([^"]*)"', out.stdout, re.M)
    }


def thread_cpu_s(pid: int, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds per thread of `pid` (utime+stime), named by `names` where known; its descendants' summed
    as "workers"."""
    out: dict[str, float] = {}
    for i, p in enumerate(tree(pid)):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                text = Path(f"/proc/{p}/task/{tid}/stat").read_text()
            except OSError:
                continue
            name = "workers" if i else names.get(int(tid), text[text.index("(") + 1 : text.rindex(")")])
            f = text.rpartition(")")[2].split()
            out[name] = out.get(name, 0.0) + (int(f[11]) + int(f[12])) / TICK
    return out


def host_busy_s() -> float:
    """CPU seconds the whole host has been busy (all CPUs, /proc/stat: everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def tree_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS of `pid`, VmRSS of its descendants) in MiB."""
    own, workers = 0.0, 0.0
    for i, p in enumerate(tree(pid)):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        if m:
            if i == 0:
                own = int(m.group(1)) / 1024
            else:
                workers += int(m.group(1)) / 1024
    return own, workers


# ---- the sink collector ------------------------------------------------------------------------------------


@dataclass
class Sink:
    """What the local collector received: OTLP posts and symbol uploads (kept as counts only)."""

    posts: int = 0
    post_bytes: int = 0
    uploads: int = 0
    upload_bytes: int = 0
    have: set[str] = field(default_factory=set)
    repeats: int = 0  # uploads of a file id already uploaded
    asked: dict[str, float] = field(default_factory=dict)  # file id the agent was told is missing -> when
    last_upload: float = 0.0  # monotonic time of the latest upload
    lock: threading.Lock = field(default_factory=threading.Lock)


def _sink_handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
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
                with sink.lock:
                    missing = [f for f in json.loads(body) if f not in sink.have]
                    now = time.monotonic()
                    for f in missing:
                        sink.asked.setdefault(f, now)
                self._answer(json.dumps(missing).encode())
                return
            with sink.lock:
                sink.posts += 1
                sink.post_bytes += len(body)
            self._answer(b"")

        def do_PUT(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            file_id = self.path.rsplit("/", 1)[-1]
            with sink.lock:
                sink.repeats += file_id in sink.have
                sink.have.add(file_id)
                sink.last_upload = time.monotonic()
                sink.uploads += 1
                sink.upload_bytes += len(body)
            self._answer(b"{}")

    return Handler


@contextlib.contextmanager
def sink_collector() -> Iterator[tuple[str, Sink]]:
    """A collector on 127.0.0.1 that acknowledges every batch and asks for every symbol file once."""
    sink = Sink()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _sink_handler(sink))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sink
    finally:
        server.shutdown()
        server.server_close()


# ---- the background load -----------------------------------------------------------------------------------


class Load:
    """CPU burners (C and Python) and a thread starting short-lived processes at a steady rate."""

    def __init__(self, work: Path, burners_c: int, burners_py: int, churn_per_s: float) -> None:
        src = work / "burn.c"
        src.write_text(BURN_C)
        self.burn = work / "burn"
        subprocess.run(["gcc", "-O1", "-g", "-o", str(self.burn), str(src)], check=True)
        self.procs = [subprocess.Popen([str(self.burn), "86400"]) for _ in range(burners_c)]
        self.procs += [subprocess.Popen([sys.executable, "-c", BURN_PY, "86400"]) for _ in range(burners_py)]
        self.churn_per_s = churn_per_s
        self.started = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._churn, daemon=True)
        self._thread.start()

    def _churn(self) -> None:
        """Short-lived processes: a shell pipeline most of the time, a short burner run or a Python
        interpreter now and then."""
        kinds = (
            ["sh", "-c", CHURN_SH],
            ["sh", "-c", CHURN_SH],
            ["sh", "-c", CHURN_SH],
            [str(self.burn), "0"],
            [sys.executable, "-c", "import json; json.dumps(list(range(1000)))"],
        )
        period = 1.0 / self.churn_per_s if self.churn_per_s > 0 else 0.0
        i = 0
        while period and not self._stop.wait(period):
            with contextlib.suppress(OSError):
                subprocess.run(kinds[i % len(kinds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            i += 1
            self.started += 1

    def close(self) -> None:
        """Stop the churn and the burners."""
        self._stop.set()
        self._thread.join()
        for p in self.procs:
            p.kill()
            p.wait()


# ---- one profiler ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Cost:
    """One profiler's figures."""

    name: str
    startup_cpu_s: float = 0.0  # start until sampling, plus the warm-up
    startup_wall_s: float = 0.0
    steady_cpu_s: float = 0.0
    steady_wall_s: float = 0.0
    steady_bpf_ns: int = 0
    steady_bpf_runs: int = 0
    rss_mb: float = 0.0
    worker_rss_mb: float = 0.0
    threads: dict[str, float] = field(default_factory=dict)  # steady-state CPU seconds per thread name
    intervals: list[float] = field(default_factory=list)  # steady-state % of one core per interval
    host_busy_pct: float = float("nan")  # the whole host's busy CPU in steady state, % of all cores
    unsettled: bool = False  # symbol uploads were still going when steady state began

    @property
    def steady_pct(self) -> float:
        """Steady-state CPU as a percentage of one core: the median of the intervals when there are several
        (other work on the host moves single ones)."""
        if len(self.intervals) > 1:
            return statistics.median(self.intervals)
        return 100 * self.steady_cpu_s / self.steady_wall_s if self.steady_wall_s else float("nan")

    @property
    def bpf_pct(self) -> float:
        """BPF sampling programs' run time as a percentage of one core (spent in the sampled tasks)."""
        return 100 * self.steady_bpf_ns / 1e9 / self.steady_wall_s if self.steady_wall_s else float("nan")


def _uploads_settled(sink: Sink) -> bool:
    """No upload for UPLOAD_QUIET_S, and none of the bundles asked for in the last UPLOAD_STUCK_S missing."""
    now = time.monotonic()
    with sink.lock:
        if now - sink.last_upload < UPLOAD_QUIET_S:
            return False
        return not any(now - t < UPLOAD_STUCK_S and f not in sink.have for f, t in sink.asked.items())


class Run:
    """A profiler process started now and measured phase by phase."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.cost = Cost(name)
        self.began = time.monotonic()
        self.proc = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )

    def warm_up(self, seconds: float, sink: Sink | None = None, timeout: float = 900.0) -> None:
        """Until it samples, then `seconds` more, and on until `sink` has had no symbol upload for
        UPLOAD_QUIET_S and holds every bundle it asked for (a big bundle takes longer to build than that
        quiet spell; one that never comes is given up after UPLOAD_STUCK_S), for at most SETTLE_MAX_S: all
        of that is startup."""
        end = time.monotonic() + timeout
        while not holds_perf_events(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"{self.cost.name} did not start: {self.proc.communicate()[1][-2000:]}")
            time.sleep(0.05)
        time.sleep(seconds)
        settle_end = time.monotonic() + SETTLE_MAX_S
        while sink is not None and not _uploads_settled(sink):
            if time.monotonic() > settle_end:
                self.cost.unsettled = True
                break
            time.sleep(1.0)
        self.cost.startup_cpu_s = tree_cpu_s(self.proc.pid)
        self.cost.startup_wall_s = time.monotonic() - self.began

    def steady(self, seconds: float, repeats: int = 1) -> None:
        """Measure `repeats` intervals of `seconds` of steady state, one after the other."""
        pid = self.proc.pid
        print(
            f"  {self.cost.name}: started in {time.monotonic() - self.began:.0f} s; steady state",
            file=sys.stderr,
            flush=True,
        )
        names = python_thread_names(pid)
        threads0 = thread_cpu_s(pid, names)
        busy0 = host_busy_s()
        cpu0, (ns0, runs0), t0 = tree_cpu_s(pid), sampling_run_time(pid), time.monotonic()
        cpu_a, t_a = cpu0, t0
        for _ in range(max(repeats, 1)):
            time.sleep(seconds)
            cpu_b, t_b = tree_cpu_s(pid), time.monotonic()
            self.cost.intervals.append(100 * (cpu_b - cpu_a) / (t_b - t_a))
            cpu_a, t_a = cpu_b, t_b
        cpu1, (ns1, runs1), t1 = tree_cpu_s(pid), sampling_run_time(pid), time.monotonic()
        self.cost.host_busy_pct = 100 * (host_busy_s() - busy0) / (t1 - t0) / NCPU
        threads1 = thread_cpu_s(pid, names)
        self.cost.threads = {k: v - threads0.get(k, 0.0) for k, v in threads1.items()}
        self.cost.steady_cpu_s, self.cost.steady_wall_s = cpu1 - cpu0, t1 - t0
        self.cost.steady_bpf_ns, self.cost.steady_bpf_runs = ns1 - ns0, runs1 - runs0
        self.take_rss()

    def take_rss(self) -> None:
        """RSS of the profiler and its workers, now."""
        self.cost.rss_mb, self.cost.worker_rss_mb = tree_rss_mb(self.proc.pid)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 120.0) -> str:
        """Stop it (its end, e.g. symbolizing and writing, is not measured); its stderr."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.communicate(timeout=timeout)[1]
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.communicate()[1]


def agent_argv(url: str, hz: int, spool: Path) -> list[str]:
    """`fleetprof agent` to the sink."""
    return [*fleetprof_command(), "agent", "--collector", url, "-F", str(hz), "--spool-dir", str(spool)]


def record_argv(out: Path, hz: int) -> list[str]:
    """`fleetprof record --all`."""
    return [*fleetprof_command(), "record", "--all", "-F", str(hz), "-o", str(out), "--duration", "86400"]


def perf_argv(out: Path, hz: int) -> list[str]:
    """`perf record -a -g` (frame-pointer call graphs) into a temp file."""
    return [PERF, "record", "-q", "-a", "-g", "-F", str(hz), "-o", str(out)]


# ---- main ---------------------------------------------------------------------------------------------


def main() -> int:
    """Measure, print the table; the last line is the headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frequency", type=int, default=20, help="samples per second per CPU")
    parser.add_argument(
        "--warmup", type=float, default=20.0, help="seconds after sampling starts (and uploads end): startup"
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="steady-state seconds per interval")
    parser.add_argument(
        "--repeats", type=int, default=1, help="steady-state intervals per profiler (the median is reported)"
    )
    parser.add_argument(
        "--churn-minutes", type=float, default=2.0, help="the agent's run through the churn, then its RSS"
    )
    parser.add_argument("--churn-rate", type=float, default=10.0, help="short-lived processes per second")
    parser.add_argument("--burners-c", type=int, default=1, help="CPU-burning C processes")
    parser.add_argument("--burners-py", type=int, default=1, help="CPU-burning Python processes")
    parser.add_argument("--only", choices=("agent", "record", "perf"), action="append", help="run only these")
    args = parser.parse_args()
    which = args.only or (["perf"] if Path(PERF).exists() else []) + ["record", "agent"]
    if not Path(PERF).exists():
        print(f"{PERF} is not installed (apt-get install linux-perf): perf's row is left out")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="fleetprof-bench-fleet-"))
    load = Load(work, args.burners_c, args.burners_py, args.churn_rate)
    costs: dict[str, Cost] = {}
    rss_trace: list[tuple[float, float, float]] = []
    sink_note = ""
    try:
        with bpf_stats() as stats_on, sink_collector() as (url, sink):
            time.sleep(2.0)
            for name in which:
                if name == "perf":
                    run = Run("perf record -a -g", perf_argv(work / "perf.data", args.frequency))
                elif name == "record":
                    env = record_env(work / "cache-record")
                    run = Run("fleetprof record --all", record_argv(work / "rec.pb.gz", args.frequency), env)
                else:
                    env = record_env(work / "cache-agent")
                    run = Run("fleetprof agent", agent_argv(url, args.frequency, work / "spool"), env)
                try:
                    run.warm_up(args.warmup, sink if name == "agent" else None)
                    run.steady(args.seconds, args.repeats)
                    if name == "agent":
                        rss_trace = churn_phase(run, args.churn_minutes * 60)
                finally:
                    run.stop(signal.SIGTERM if name == "agent" else signal.SIGINT)
                costs[name] = run.cost
            sink_note = (
                f"sink: {sink.posts} batches ({sink.post_bytes / 2**10:.0f} KiB), "
                f"{sink.uploads} symbol bundles ({sink.upload_bytes / 2**20:.1f} MiB, "
                f"{sink.repeats} repeated)"
            )
    finally:
        churned = load.started
        load.close()
        shutil.rmtree(work, ignore_errors=True)
    print_table(args, costs, churned, bool(stats_on), sink_note, rss_trace)
    return 0


def churn_phase(run: Run, seconds: float) -> list[tuple[float, float, float]]:
    """Keep the agent running through the churn; its RSS (own, workers) every tenth of the phase."""
    trace = []
    step = max(seconds / 10, 1.0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(step, max(end - time.monotonic(), 0)))
        own, workers = tree_rss_mb(run.proc.pid)
        trace.append((seconds - (end - time.monotonic()), own, workers))
    run.take_rss()
    return trace


def print_table(
    args: argparse.Namespace,
    costs: dict[str, Cost],
    churned: int,
    stats_on: bool,
    sink_note: str,
    rss_trace: list[tuple[float, float, float]],
) -> None:
    """The cost table, the agent's RSS through the churn, and the headline."""
    print(
        f"agent cost at {args.frequency} Hz, whole host, {NCPU} CPUs: {args.burners_c} C + {args.burners_py} "
        f"Python burners, {args.churn_rate:g} short-lived processes/s ({churned} in all); startup = until "
        f"sampling + {args.warmup:g} s warm-up (and symbol uploads done), steady = the next "
        f"{args.repeats} x {args.seconds:g} s (median)"
    )
    head = ("profiler", "startup CPU", "startup wall", "steady CPU", "% of 1 core", "vs perf", "BPF % core")
    print(f"{head[0]:>24s}" + "".join(f"{h:>14s}" for h in head[1:]) + f"{'RSS (+workers)':>20s}")
    perf = costs.get("perf")
    for c in costs.values():
        ratio = c.steady_pct / perf.steady_pct if perf and perf.steady_pct else float("nan")
        cells = (
            f"{c.startup_cpu_s:.2f} s",
            f"{c.startup_wall_s:.1f} s",
            f"{c.steady_cpu_s:.2f} s",
            f"{c.steady_pct:.2f}%",
            f"{ratio:.1f}x",
            f"{c.bpf_pct:.3f}%" if stats_on and c.steady_bpf_runs else "n/a",
        )
        rss = f"{c.rss_mb:.0f} (+{c.worker_rss_mb:.0f}) MB"
        print(f"{c.name:>24s}" + "".join(f"{x:>14s}" for x in cells) + f"{rss:>20s}")
    for c in costs.values():
        busy = sorted(((v, k) for k, v in c.threads.items() if v > 0), reverse=True)
        if len(busy) > 1:
            print(
                f"  {c.name} steady CPU by thread: "
                + ", ".join(f"{k} {100 * v / c.steady_wall_s:.2f}%" for v, k in busy)
            )
    for c in costs.values():
        print(
            f"  {c.name} steady % of 1 core per interval: "
            + ", ".join(f"{x:.2f}" for x in c.intervals)
            + f"; the host was {c.host_busy_pct:.0f}% busy (all {NCPU} CPUs, burners included)"
            + (
                f"; symbol uploads had not settled after {SETTLE_MAX_S:g} s (new files on the host)"
                if c.unsettled
                else ""
            )
        )
    if sink_note:
        print(sink_note)
    if rss_trace:
        print(
            "agent RSS through the churn (s: own + workers MB): "
            + ", ".join(f"{t:.0f}: {o:.0f}+{w:.0f}" for t, o, w in rss_trace)
        )
    agent = costs.get("agent")
    if agent is None:
        print("headline: the agent was not run")
        return
    perf_pct = f"{perf.steady_pct:.2f}%" if perf else "n/a"
    print(
        f"headline: fleetprof agent at {args.frequency} Hz steady state {agent.steady_pct:.2f}% of one core "
        f"(goal <= 0.5%; perf record -a -g {perf_pct}, record --all "
        f"{costs['record'].steady_pct if 'record' in costs else float('nan'):.2f}%), startup "
        f"{agent.startup_cpu_s:.1f} s CPU, RSS {agent.rss_mb:.0f} MB + {agent.worker_rss_mb:.0f} MB workers "
        f"after {args.churn_minutes:g} min of churn"
    )


if __name__ == "__main__":
    sys.exit(main())
