"""Agent overhead, whole host: fleetprof `record --all` at 999 Hz on every CPU with ~300 sleeping processes
and two busy ones (agent CPU per 1,000 samples, peak RSS, BPF map memory), then the slowdown of a CPU-bound
workload (the zoo's C chain, fixed work, one copy per CPU) under fleetprof at 99 and 999 Hz against no
profiler and `perf record -a --call-graph dwarf` at the same rates: rounds interleaved in a rotated order, the
median of the paired per-round slowdowns with its quartiles.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import holds_perf_events, parse_summary, sampling_run_time, spread  # noqa: E402
from zoo.build import record_args, record_env  # noqa: E402
from zoo.programs import CATALOG  # noqa: E402

PERF = "/usr/bin/perf"
TICK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


@dataclass(slots=True)
class Usage:
    """What one profiler process used, sampled from /proc while it ran."""

    cpu_s: float = 0.0  # whole life
    cpu_start_s: float = 0.0  # when sampling began (BPF loaded, processes scanned, attached)
    cpu_sampling_s: float = 0.0  # while sampling (perf event fds open)
    wall_sampling_s: float = 0.0
    rss_mb: float = 0.0
    rss_sampling_mb: float = 0.0  # peak RSS up to the end of sampling (before symbolizing and writing)
    map_mb: float = 0.0
    bpf_ns: int = 0  # run time of the perf-event programs (kernel.bpf_stats_enabled)
    bpf_runs: int = 0
    samples: int = 0
    data_mb: float = 0.0
    sigint_resent: int = 0  # SIGINTs sent again because the profiler kept sampling


def _cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def _hwm_mb(pid: int) -> float | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def _map_mb(pid: int) -> float:
    """memlock of the BPF maps the process holds open, from /proc/PID/fdinfo."""
    total, seen = 0, set()
    try:
        fds = os.listdir(f"/proc/{pid}/fdinfo")
    except OSError:
        return 0.0
    for fd in fds:
        try:
            info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
        except OSError:
            continue
        mid = re.search(r"^map_id:\s+(\d+)", info, re.M)
        mem = re.search(r"^memlock:\s+(\d+)", info, re.M)
        if mid and mem and mid.group(1) not in seen:
            seen.add(mid.group(1))
            total += int(mem.group(1))
    return total / 2**20


class Profiler:
    """A whole-host profiler process, watched through /proc until it exits."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, data: Path | None = None) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
        )
        self.data = data
        self.usage = Usage()
        self._began: float | None = None
        self.resent = 0

    def watch(self) -> None:
        """Refresh CPU (split at the sampling phase), peak RSS and map memory."""
        pid = self.proc.pid
        cpu, hwm = _cpu_s(pid), _hwm_mb(pid)
        if cpu is not None:
            self.usage.cpu_s = cpu
            if holds_perf_events(pid):
                now = time.monotonic()
                if self._began is None:
                    self._began = now
                    self.usage.cpu_start_s = cpu
                self.usage.cpu_sampling_s = cpu - self.usage.cpu_start_s
                self.usage.wall_sampling_s = now - self._began
                self.usage.rss_sampling_mb = max(self.usage.rss_sampling_mb, hwm or 0.0)
        if hwm is not None:
            self.usage.rss_mb = max(self.usage.rss_mb, hwm)
        self.usage.map_mb = max(self.usage.map_mb, _map_mb(pid))
        ns, runs = sampling_run_time(pid)
        if runs >= self.usage.bpf_runs:
            self.usage.bpf_ns, self.usage.bpf_runs = ns, runs

    def wait_ready(self, timeout: float = 60) -> None:
        """Until the profiler samples (perf event fds open), then a little longer for its first poll."""
        end = time.monotonic() + timeout
        while not holds_perf_events(self.proc.pid):
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"profiler did not start: {self.proc.communicate()[1]}")
            time.sleep(0.05)
        self.watch()
        time.sleep(0.5)
        self.watch()

    def stop(self, interrupt: bool = True) -> Usage:
        """SIGINT (or let a --duration run end), collect stderr, parse the sample count."""
        if interrupt and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        while self.proc.poll() is None:
            self.watch()
            if interrupt and time.monotonic() - sent > 5 and holds_perf_events(self.proc.pid):
                self.resent += 1  # still sampling: the SIGINT was lost, send it again
                self.proc.send_signal(signal.SIGINT)
                sent = time.monotonic()
            time.sleep(0.1)
        err = self.proc.communicate()[1]
        self.usage.sigint_resent = self.resent
        summary = parse_summary(err)
        if summary is None and self.data is None:
            print(f"  (no summary line from {self.proc.args[0]}: {err.strip()[-200:]!r})", file=sys.stderr)
        self.usage.samples = summary.samples if summary else 0
        if self.data is not None and self.data.exists():
            self.usage.data_mb = self.data.stat().st_size / 2**20
        return self.usage

    def run_to_end(self) -> Usage:
        """Watch a --duration run until it exits by itself."""
        while self.proc.poll() is None:
            self.watch()
            time.sleep(0.05)
        return self.stop(interrupt=False)

    def sampling_cpu(self, action: Callable[[], float]) -> tuple[float, float]:
        """Run `action` while sampling; (its result, profiler CPU seconds spent meanwhile)."""
        self.watch()
        before = self.usage.cpu_s
        result = action()
        self.watch()
        return result, self.usage.cpu_s - before


def fleetprof(out: Path, hz: int, cache: Path, duration: float = 3600) -> Profiler:
    """`fleetprof record --all`."""
    argv = [*record_args(out, hz), "--all", "--duration", f"{duration:g}"]
    return Profiler(argv, env=record_env(cache))


def perf_dwarf(out: Path, hz: int) -> Profiler:
    """`perf record -a --call-graph dwarf`."""
    return Profiler(
        [PERF, "record", "-q", "-a", "-F", str(hz), "--call-graph", "dwarf", "-o", str(out)], data=out
    )


def workload(exe: str, rounds: int) -> float:
    """Wall seconds for one copy per CPU of the fixed-work chain program."""
    begin = time.monotonic()
    procs = [subprocess.Popen([exe, "-n", str(rounds)]) for _ in range(NCPU)]
    for p in procs:
        p.wait()
    return time.monotonic() - begin


def calibrate(exe: str, target_s: float) -> int:
    """Rounds that take about `target_s` for one copy."""
    begin = time.monotonic()
    subprocess.run([exe, "-n", "200"], check=True)
    per_round = (time.monotonic() - begin) / 200
    return max(int(target_s / per_round), 200)


def agent_cost(out_dir: Path, cache: Path, busy_exe: str, seconds: float) -> tuple[Usage, Usage]:
    """`--all -F 999` with both CPUs busy: first with empty caches (every file's unwind table and symbols
    built), then again with them warm."""
    busy = [subprocess.Popen([busy_exe, "120"]) for _ in range(NCPU)]
    stats_before = BPF_STATS.read_text().strip()
    BPF_STATS.write_text("1")  # run time per BPF program, for these two runs only
    try:
        cold = fleetprof(out_dir / "cold.pb.gz", 999, cache, duration=seconds).run_to_end()
        warm = fleetprof(out_dir / "warm.pb.gz", 999, cache, duration=seconds).run_to_end()
    finally:
        BPF_STATS.write_text(stats_before)
        for p in busy:
            p.kill()
            p.wait()
    return cold, warm


def main() -> int:
    """Measure, print the tables; the last line is the headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sleepers", type=int, default=300, help="idle processes started on the host")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds of the slowdown runs")
    parser.add_argument("--work", type=float, default=3.0, help="seconds of one workload run, unprofiled")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the agent-cost recordings")
    args = parser.parse_args()
    has_perf = Path(PERF).exists()
    if not has_perf:
        print(f"{PERF} is not installed (apt-get install linux-perf): perf's rows are left out")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up the processes started below
    work = Path(tempfile.mkdtemp(prefix="fleetprof-bench-"))
    (work / "build").mkdir()
    cache = work / "cache"
    exe = CATALOG["zoo_c"].command(work / "build", 1)[0]
    sleepers = [subprocess.Popen(["sleep", "3600"]) for _ in range(args.sleepers)]
    try:
        cold, warm = agent_cost(work, cache, exe, args.seconds)
        print_agent_cost(args, cold, warm)
        rounds = calibrate(exe, args.work)
        cap = 10 * args.work + 60  # --duration: a run never outlives the bench even if SIGINT is lost
        configs = {
            "no profiler": None,
            "fleetprof 99 Hz": lambda: fleetprof(work / "f99.pb.gz", 99, cache, cap),
            "fleetprof 999 Hz": lambda: fleetprof(work / "f999.pb.gz", 999, cache, cap),
        }
        if has_perf:
            configs["perf dwarf 99 Hz"] = lambda: perf_dwarf(work / "p99.data", 99)
            configs["perf dwarf 999 Hz"] = lambda: perf_dwarf(work / "p999.data", 999)
        times: dict[str, list[float]] = {name: [] for name in configs}
        usages: dict[str, list[Usage]] = {name: [] for name in configs}
        cpus: dict[str, list[float]] = {name: [] for name in configs}
        names = list(configs)
        for r in range(args.rounds):  # every configuration once a round, the order rotated round by round
            for name in names[r % len(names) :] + names[: r % len(names)]:
                start = configs[name]
                prof = start() if start else None
                if prof is None:
                    times[name].append(workload(exe, rounds))
                    continue
                prof.wait_ready()
                wall, cpu = prof.sampling_cpu(lambda: workload(exe, rounds))
                times[name].append(wall)
                cpus[name].append(cpu)
                usages[name].append(prof.stop())
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)
    return print_slowdown(args, warm, times, cpus, usages)


def print_agent_cost(args: argparse.Namespace, cold: Usage, warm: Usage) -> None:
    """The agent-cost table."""
    print(
        f"agent cost: fleetprof record --all -F 999 for {args.seconds:g} s on {NCPU} CPUs, "
        f"{NCPU} busy + {args.sleepers} sleeping processes"
    )
    head = (
        "caches",
        "samples",
        "start CPU",
        "sampling CPU",
        "ms/1k samples",
        "CPU share",
        "end CPU",
        "RSS sampling",
        "peak RSS",
        "BPF maps",
    )
    print("".join(f"{h:>14s}" for h in (*head, "BPF us/run")))
    for label, u in (("cold", cold), ("warm", warm)):
        per_k = 1e6 * u.cpu_sampling_s / u.samples if u.samples else float("nan")
        share = u.cpu_sampling_s / (u.wall_sampling_s * NCPU) if u.wall_sampling_s else float("nan")
        end = u.cpu_s - u.cpu_start_s - u.cpu_sampling_s
        cells = (
            label,
            f"{u.samples:,d}",
            f"{u.cpu_start_s:.2f} s",
            f"{u.cpu_sampling_s:.2f} s",
            f"{per_k:.1f} ms",
            f"{100 * share:.1f}%",
            f"{end:.2f} s",
            f"{u.rss_sampling_mb:.0f} MB",
            f"{u.rss_mb:.0f} MB",
            f"{u.map_mb:.0f} MB",
            f"{u.bpf_ns / u.bpf_runs / 1000:.1f}" if u.bpf_runs else "n/a",
        )
        print("".join(f"{c:>14s}" for c in cells))
    print(flush=True)


def print_slowdown(args: argparse.Namespace, warm: Usage, times: dict, cpus: dict, usages: dict) -> int:
    """The slowdown table and the headline: a round's slowdown is its time over the same round's
    unprofiled time (paired); the median over the rounds, with its quartiles."""
    base = statistics.median(times["no profiler"])
    print(
        f"workload slowdown: {NCPU} copies of zoo_c (fixed work), {args.rounds} rounds (order rotated), "
        "median of the per-round slowdowns [quartiles]; ~: the quartiles span 0, within the noise"
    )
    cols = ("profiler", "wall s", "slowdown", "quartiles", "profiler CPU", "CPU share", "data")
    print(
        "".join(f"{c:>20s}" if i == 0 else f"{c:>13s}" if i != 3 else f"{c:>19s}" for i, c in enumerate(cols))
    )
    slow: dict[str, float] = {}
    for name, ts in times.items():
        wall = statistics.median(ts)
        cpu = statistics.median(cpus[name]) if cpus[name] else 0.0
        data = statistics.median([u.data_mb for u in usages[name]]) if usages[name] else 0.0
        med, lo, hi = spread([t / b - 1 for t, b in zip(ts, times["no profiler"], strict=True)])
        slow[name] = med
        noise = "~" if lo <= 0 <= hi and name != "no profiler" else " "
        cells = (
            f"{wall:.2f}",
            f"{med:+.1%}",
            f"[{lo:+.1%},{hi:+.1%}]{noise}",
            f"{cpu:.2f} s",
            f"{100 * cpu / (wall * NCPU):.1f}%",
        )
        widths = (13, 13, 19, 13, 13)
        print(
            f"{name:>20s}"
            + "".join(f"{c:>{w}s}" for c, w in zip(cells, widths, strict=True))
            + f"{data:>10.0f} MB"
        )
    print(f"  (no profiler: {base:.2f} s median; this machine's 2 CPUs are shared, so the figures are noisy)")
    lost = {name: sum(u.sigint_resent for u in us) for name, us in usages.items() if us}
    if any(lost.values()):
        print(f"SIGINT lost and sent again: {', '.join(f'{n}: {c}x' for n, c in lost.items() if c)}")
    f99, f999 = slow["fleetprof 99 Hz"], slow["fleetprof 999 Hz"]
    p999 = slow.get("perf dwarf 999 Hz", math.nan)
    per_k = 1e6 * warm.cpu_sampling_s / warm.samples if warm.samples else float("nan")
    print(
        f"headline: fleetprof --all 999 Hz: {per_k:.0f} ms agent CPU per 1k samples, "
        f"peak RSS {warm.rss_mb:.0f} MB (goal <= 150), BPF maps {warm.map_mb:.0f} MB, "
        f"BPF {warm.bpf_ns / max(warm.bpf_runs, 1) / 1000:.1f} us per sampling run; "
        f"workload slowdown {f99:+.1%} at 99 Hz, {f999:+.1%} at 999 Hz "
        f"vs perf --call-graph dwarf {p999:+.1%} at 999 Hz (medians of paired rounds)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
