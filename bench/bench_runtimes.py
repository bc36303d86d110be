"""PHP, Ruby, Perl, Node.js, Java and Go stacks at 99 Hz: cost per sample and target slowdown, beside
each runtime's own profiler and `perf record -g`, in the same run.

Each runtime runs the same fixed work: a five-deep recursive chain ending in an arithmetic loop, which
times itself and prints the seconds (PHP 8.2, Ruby 3.1, Perl 5.36, Node.js — the system's and the npm builds
make setup installs: node18, node22, node24 —, Java and Go as installed; Go's
sets a new goroutine label set every round, which fleetprof and runtime/pprof both record).

1. Cost, per runtime: the work profiled by a ProfilerCore in this process at 99 Hz (after a warm-up):
   the sampling BPF programs' own run_time_ns per run and per sample recorded (fdinfo, BPF_ENABLE_STATS),
   the agent's CPU per 1,000 samples of the target, and the share of the target's samples that hold the
   runtime's frames (PHP, Ruby), or that carry the goroutine's labels (Go), with no unwind error.
2. Slowdown, per runtime: the work alone, under `fleetprof record -F 99`, `perf record -F 99 -g` and the
   runtime's own profiler (PHP: Excimer at 99 Hz, Ruby: StackProf in cpu mode at 99 Hz, Go: runtime/pprof at
   its fixed 100 Hz, Node.js: --cpu-prof at a 10.1 ms interval, Java: JFR with its `profile` settings
   (execution samples every 10 ms), Perl: Devel::NYTProf, which is not a sampler and times every
   statement); perf runs node with --perf-basic-prof and java with -XX:+DumpPerfMapAtExit, so their JIT
   frames have names too; interleaved rounds, order rotated; the median of the paired per-round slowdowns.

    .venv/bin/python bench/bench_runtimes.py [--quick] [--runtimes php,ruby,perl,node,node24,java,go]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NPM_NODES = ROOT / "tools" / "npm" / "node_modules"  # nodejs.org builds of other Node.js lines (make setup)
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import bpf_stats, sampling_run_time, spread  # noqa: E402
from test_python_common import fleetprof_command  # noqa: E402

from fleetprof.agent.core import CoreOptions, ProfilerCore  # noqa: E402
from fleetprof.tracer import layout  # noqa: E402
from fleetprof.tracer.aggregate import decode_frames  # noqa: E402

RATE = 99
WARM_UP = 3.0  # seconds: the target's unwind tables compiled and loaded (node's take about one)

PHP_WORK = r"""<?php
function hot(int $n): int {
    $a = 0; for ($i = 0; $i < $n; $i++) { $a = ($a * 31 + $i) % 1000003; } return $a;
}
function chain(int $d, int $n): int { return $d > 1 ? chain($d - 1, $n) : hot($n); }
$iterations = (int) $argv[1];
$own = getenv('OWN');
if ($own) { $p = new ExcimerProfiler(); $p->setPeriod(1 / 99); $p->setEventType(EXCIMER_CPU); $p->start(); }
$t = hrtime(true);
for ($k = 0; $k < $iterations; $k++) { chain(5, 20000); }
$s = (hrtime(true) - $t) / 1e9;
if ($own) { $p->stop(); fwrite(STDERR, count($p->getLog()) . " samples\n"); }
echo $s, "\n";
"""

RUBY_WORK = r"""
def hot(n) a = 0; i = 0; while i < n; a = (a * 31 + i) % 1_000_003; i += 1; end; a; end
def chain(d, n) d > 1 ? chain(d - 1, n) : hot(n) end
iterations = ARGV[0].to_i
work = -> { iterations.times { chain(5, 20_000) } }
t = Process.clock_gettime(Process::CLOCK_MONOTONIC)
if ENV["OWN"]
  require "stackprof"
  StackProf.run(mode: :cpu, interval: 1_000_000 / 99) { work.call }
else
  work.call
end
puts Process.clock_gettime(Process::CLOCK_MONOTONIC) - t
"""

PERL_WORK = r"""
use Time::HiRes qw(time);
sub hot { my ($n) = @_; my $a = 0; for my $i (1 .. $n) { $a = ($a * 31 + $i) % 1000003; } return $a; }
sub chain { my ($d, $n) = @_; return $d > 1 ? chain($d - 1, $n) : hot($n); }
my $t = time;
chain(5, 20000) for 1 .. $ARGV[0];
print time - $t, "\n";
"""

NODE_WORK = r"""
function hot(n) { let a = 0; for (let i = 0; i < n; i++) a = (a * 31 + i) % 1000003; return a; }
function chain(d, n) { return d > 1 ? chain(d - 1, n) : hot(n); }
const iterations = Number(process.argv[2]);
const t = process.hrtime.bigint();
let s = 0;
for (let k = 0; k < iterations; k++) s += chain(5, 200000);
process.stderr.write(String(s) + "\n");
console.log(Number(process.hrtime.bigint() - t) / 1e9);
"""

JAVA_WORK = """
public class Work {
    static int hot(int n) { int a = 0; for (int i = 0; i < n; i++) a = (a * 31 + i) % 1000003; return a; }
    static int chain(int d, int n) { return d > 1 ? chain(d - 1, n) : hot(n); }
    public static void main(String[] args) {
        int iterations = Integer.parseInt(args[0]);
        long t = System.nanoTime(), s = 0;
        for (int k = 0; k < iterations; k++) s += chain(5, 200000);
        System.err.println(s);
        System.out.println((System.nanoTime() - t) / 1e9);
    }
}
"""

GO_WORK = """package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strconv"
	"time"
)

//go:noinline
func hot(n int) int {
	a := 0
	for i := 0; i < n; i++ {
		a = (a*31 + i) % 1000003
	}
	return a
}

//go:noinline
func chain(d, n int) int {
	if d > 1 {
		return chain(d-1, n)
	}
	return hot(n)
}

func main() {
	iterations, _ := strconv.Atoi(os.Args[1])
	if os.Getenv("OWN") != "" {
		pprof.StartCPUProfile(io.Discard)
		defer pprof.StopCPUProfile()
	}
	t := time.Now()
	s := 0
	base := context.Background()
	for k := 0; k < iterations; k++ {
		pprof.SetGoroutineLabels(pprof.WithLabels(base, pprof.Labels("round", strconv.Itoa(k%4))))
		s += chain(5, 200000)
	}
	fmt.Fprintln(os.Stderr, s)
	fmt.Println(time.Since(t).Seconds())
}
"""


@dataclass
class Runtime:
    """One runtime under test: how to run its work, which frames are its own, its own sampler's name."""

    name: str
    command: list[str]  # + iterations
    frame_kind: int  # layout.FRAME_* of its frames, 0 for native code (Go)
    own: str  # its own profiler, "" when none is installed
    own_command: list[str] | None = None  # how to run the work under it (default: `command`, OWN=1)
    perf_command: list[str] | None = None  # how perf runs it (default: `command`)


@dataclass
class Cost:
    bpf_run_us: float  # sampling programs' run time per own run
    bpf_sample_us: float  # per sample they recorded
    agent_ms: float  # agent CPU per 1,000 target samples
    whole: float  # share of the target's samples with the runtime's frames and no unwind error
    samples: int


def runtimes(work: Path, wanted: set[str] | None) -> list[Runtime]:
    """The runtimes installed here, their work scripts written (and Go's built) in `work`."""
    out: list[Runtime] = []
    php = shutil.which("php8.2") or shutil.which("php")
    if php and (wanted is None or "php" in wanted):
        (work / "work.php").write_text(PHP_WORK)
        has_excimer = "excimer" in subprocess.run([php, "-m"], capture_output=True, text=True).stdout.lower()
        out.append(
            Runtime("php", [php, str(work / "work.php")], layout.FRAME_PHP, "excimer" if has_excimer else "")
        )
    ruby = shutil.which("ruby3.1") or shutil.which("ruby")
    if ruby and (wanted is None or "ruby" in wanted):
        (work / "work.rb").write_text(RUBY_WORK)
        probe = subprocess.run([ruby, "-e", "require 'stackprof'"], capture_output=True)
        out.append(
            Runtime(
                "ruby",
                [ruby, str(work / "work.rb")],
                layout.FRAME_RUBY,
                "" if probe.returncode else "stackprof",
            )
        )
    perl = shutil.which("perl")
    if perl and (wanted is None or "perl" in wanted):
        (work / "work.pl").write_text(PERL_WORK)
        has_nytprof = not subprocess.run(
            [perl, "-MDevel::NYTProf::Data", "-e", "1"], capture_output=True
        ).returncode
        own = [perl, "-d:NYTProf", str(work / "work.pl")]
        out.append(
            Runtime(
                "perl",
                [perl, str(work / "work.pl")],
                layout.FRAME_PERL,
                "nytprof" if has_nytprof else "",
                own,
            )
        )
    nodes = [("node", shutil.which("node"))]
    nodes += [(p.parents[1].name, str(p)) for p in sorted(NPM_NODES.glob("node*/bin/node"))]
    for name, node in nodes:
        if not node or (wanted is not None and name not in wanted):
            continue
        script = str(work / "work.js")
        (work / "work.js").write_text(NODE_WORK)
        own = [node, "--cpu-prof", "--cpu-prof-dir", str(work / "cpuprof"), "--cpu-prof-interval", "10101"]
        out.append(
            Runtime(
                name,
                [node, script],
                layout.FRAME_V8,
                "cpu-prof",
                [*own, script],
                [node, "--perf-basic-prof", script],
            )
        )
    java, javac = shutil.which("java"), shutil.which("javac")
    if java and javac and (wanted is None or "java" in wanted):
        (work / "Work.java").write_text(JAVA_WORK)
        subprocess.run([javac, "-d", str(work), str(work / "Work.java")], check=True)
        flight = f"-XX:StartFlightRecording=filename={work / 'work.jfr'},settings=profile"
        perf_map = ["-XX:+UnlockDiagnosticVMOptions", "-XX:+DumpPerfMapAtExit"]
        out.append(
            Runtime(
                "java",
                [java, "-cp", str(work), "Work"],
                layout.FRAME_JVM,
                "jfr",
                [java, flight, "-cp", str(work), "Work"],
                [java, *perf_map, "-cp", str(work), "Work"],
            )
        )
    go = shutil.which("go")
    if go and (wanted is None or "go" in wanted):
        src = work / "gowork"
        src.mkdir(exist_ok=True)
        (src / "main.go").write_text(GO_WORK)
        (src / "go.mod").write_text("module gowork\n\ngo 1.19\n")
        env = dict(os.environ, GOFLAGS="-mod=mod", GOCACHE=str(work / "gocache"), CGO_ENABLED="0")
        subprocess.run(
            [go, "build", "-ldflags=-s -w", "-o", str(work / "gowork.bin")], cwd=src, env=env, check=True
        )
        out.append(Runtime("go", [str(work / "gowork.bin")], 0, "pprof"))
    return out


def timed(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> float:
    """The seconds the work took, as it measured itself (run in `cwd`: node leaves its v8 logs there)."""
    out = subprocess.run(
        cmd, capture_output=True, text=True, env=env, check=True, timeout=900, cwd=cwd
    ).stdout
    return float(
        next(line for line in reversed(out.splitlines()) if re.fullmatch(r"[0-9.e+-]+", line.strip()))
    )


def calibrate(rt: Runtime, env: dict[str, str], seconds: float) -> int:
    """Iterations that take about `seconds` unprofiled (probed until a run lasts 0.3 s, so a JIT's
    warm-up does not stand for its steady speed)."""
    iterations = 3
    probe = timed([*rt.command, str(iterations)], env)
    while probe < 0.3 and iterations < 10**7:
        iterations *= 10
        probe = timed([*rt.command, str(iterations)], env)
    return max(3, int(iterations * seconds / max(probe, 1e-3)))


def section_cost(rts: list[Runtime], seconds: float, work: Path) -> dict[str, Cost]:
    print(f"\n== 1. cost while sampling at {RATE} Hz ({seconds:g} s measured after a {WARM_UP:g} s warm-up)")
    print(f"{'runtime':<8} {'BPF/run':>9} {'BPF/sample':>11} {'agent/1k':>9} {'whole':>7} {'samples':>8}")
    out: dict[str, Cost] = {}
    env = dict(os.environ)
    for rt in rts:
        iterations = calibrate(rt, env, seconds + 8)
        target = subprocess.Popen([*rt.command, str(iterations)], stdout=subprocess.DEVNULL, env=env)
        try:
            time.sleep(0.3)
            core = ProfilerCore(CoreOptions(frequency_hz=RATE, pids=(target.pid,), cache_dir=work / "cache"))
            core.load()
            core.scan([target.pid])
            core.start()
            warm = time.monotonic() + WARM_UP
            while time.monotonic() < warm:
                core.poll(50)
            before = _target(core, target.pid, rt.frame_kind)
            cpu0, (ns0, runs0), all0 = time.process_time(), sampling_run_time(), _all(core)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                core.poll(50)
            cpu1, (ns1, runs1), all1 = time.process_time(), sampling_run_time(), _all(core)
            after = _target(core, target.pid, rt.frame_kind)
            core.stop()
            core.close()
        finally:
            target.kill()
            target.wait()
        n, good = after[0] - before[0], after[1] - before[1]
        cost = Cost(
            bpf_run_us=(ns1 - ns0) / max(runs1 - runs0, 1) / 1e3,
            bpf_sample_us=(ns1 - ns0) / max(all1 - all0, 1) / 1e3,
            agent_ms=(cpu1 - cpu0) / max(n, 1) * 1e6,
            whole=good / max(n, 1),
            samples=n,
        )
        out[rt.name] = cost
        print(
            f"{rt.name:<8} {cost.bpf_run_us:>7.1f}us {cost.bpf_sample_us:>9.1f}us {cost.agent_ms:>7.1f}ms "
            f"{cost.whole:>7.1%} {n:>8}"
        )
    return out


def _all(core: ProfilerCore) -> int:
    return sum(c.count for c in core.aggregator.stacks.values())


def _target(core: ProfilerCore, pid: int, kind: int) -> tuple[int, int]:
    """(samples of `pid`, those whole with the runtime's frames — for native code (Go), whole and carrying
    the goroutine's labels) so far."""
    n = good = 0
    for key, c in core.aggregator.stacks.items():
        if key.pid != pid:
            continue
        n += c.count
        if key.error != layout.UNWIND_COMPLETE:
            continue
        if kind == 0 and not core.goroutine_labels(pid, key.labels, key.labels_tag):
            continue
        frames = decode_frames(key.frames[key.num_kernel * layout.FRAME_SIZE :])
        if kind == 0 or any(f.kind == kind for f in frames):
            good += c.count
    return n, good


def section_slowdown(
    rts: list[Runtime], rounds: int, seconds: float, work: Path
) -> dict[str, dict[str, float]]:
    print(
        f"\n== 2. target slowdown at {RATE} Hz, fixed work of ~{seconds:g} s, {rounds} interleaved rounds: "
        "median of the paired per-round slowdowns [quartiles]"
    )
    perf = shutil.which("perf")
    fp = [*fleetprof_command(), "record", "-F", str(RATE), "-o", str(work / "slow.folded"), "--"]
    base_env = dict(os.environ, FLEETPROF_CACHE_DIR=str(work / "cache"))
    out: dict[str, dict[str, float]] = {}
    for rt in rts:
        configs: dict[str, tuple[list[str], dict[str, str]]] = {
            "none": ([], base_env),
            "fleetprof": (fp, base_env),
        }
        if perf:
            configs["perf -g"] = (
                [perf, "record", "-q", "-F", str(RATE), "-g", "-o", str(work / "perf.data"), "--"],
                base_env,
            )
        if rt.own:
            own_env = dict(base_env, OWN="1", NYTPROF=f"file={work / 'nytprof.out'}")
            configs[rt.own] = ([], own_env)
        iterations = calibrate(rt, base_env, seconds)
        names = list(configs)
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                prefix, env = configs[name]
                command = rt.command
                if name == rt.own and rt.own_command:
                    command = rt.own_command
                elif name == "perf -g" and rt.perf_command:
                    command = rt.perf_command
                times[name].append(timed([*prefix, *command, str(iterations)], env, work))
        out[rt.name] = {}
        cells = [f"none {statistics.median(times['none']):.2f} s"]
        for name in names[1:]:
            med, lo, hi = spread([t / b - 1 for t, b in zip(times[name], times["none"], strict=True)])
            out[rt.name][name] = med
            noise = "~" if lo <= 0 <= hi else ""
            cells.append(f"{name} {med:+.1%} [{lo:+.1%},{hi:+.1%}]{noise}")
        print(f"{rt.name:<6} " + "   ".join(cells))
    print("  (~: the quartiles span 0, within this machine's noise)")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runtimes",
        help="comma-separated: php,ruby,perl,node,node18,node22,node24,java,go (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rounds")
    args = parser.parse_args()
    wanted = set(args.runtimes.split(",")) if args.runtimes else None
    started = time.time()
    try:
        run(args.quick, wanted)
    finally:  # the perf maps `node --perf-basic-prof` leaves in /tmp
        for left in Path("/tmp").glob("perf-*.map"):
            if left.stat().st_mtime >= started:
                left.unlink(missing_ok=True)


def run(quick: bool, wanted: set[str] | None) -> None:
    """Both sections on the runtimes installed, then the headline."""
    with tempfile.TemporaryDirectory(prefix="bench-runtimes-") as tmp, bpf_stats() as stats_on:
        work = Path(tmp)
        rts = runtimes(work, wanted)
        if not rts:
            print("no runtime installed (php8.2, ruby3.1, perl, node, java, go): nothing to measure")
            return
        if not stats_on:
            print("BPF run-time stats unavailable: BPF columns read 0")
        costs = section_cost(rts, 2.0 if quick else 5.0, work)
        slow = section_slowdown(rts, 3 if quick else 9, 1.0 if quick else 2.0, work)
    parts = []
    for rt in rts:
        s, c = slow[rt.name], costs[rt.name]
        peers = ", ".join(f"{name} {v:+.1%}" for name, v in s.items() if name != "fleetprof")
        parts.append(
            f"{rt.name} {c.whole:.1%} whole, BPF {c.bpf_sample_us:.1f} us/sample, "
            f"slowdown {s['fleetprof']:+.1%} (vs {peers})"
        )
    print(f"\nheadline at {RATE} Hz: " + "; ".join(parts))


if __name__ == "__main__":
    main()
