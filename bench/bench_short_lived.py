"""Short-lived processes: the share of their samples that come out whole, fleetprof vs perf, same loop.

A shell loop runs 300 programs of 20-50 ms each, one after the other: half a C program compiled here
without frame pointers (-O2 -fomit-frame-pointer; main -> sl_outer -> sl_inner -> sl_hot burning CPU),
half `python3 -c` of a small function chain (<module> -> outer -> inner -> hot). Recorded at 99 Hz by
`fleetprof record -- sh LOOP` (a fresh unwind-table cache, then a warm one) and by
`perf record --call-graph dwarf -- sh LOOP` (`perf script` unwinds and names). A sample of those programs
is whole when it has no `[unwind:` frame, its outermost frame is where a process starts (bench/_wholeness.py),
a sample in the C chain reaches main, and (fleetprof) its Python frames are named, the chain under <module>
(perf sees no Python frames: its Python samples are judged on their native stack alone). Samples without
user frames (in the kernel around exec and exit) are left out of both and counted; why the others are not
whole is counted per reason. The last line is the headline.

    .venv/bin/python bench/bench_short_lived.py [--programs 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import parse_summary  # noqa: E402
from _wholeness import Frame, Sample, Share, perf_samples, verdict  # noqa: E402
from test_python_common import fleetprof_command  # noqa: E402
from test_python_common import load_pprof as load_python_pprof  # noqa: E402

PERF = "/usr/bin/perf"
RATE = 99
C_NAME = "sl_burn"
C_CHAIN = ["main", "sl_outer", "sl_inner", "sl_hot"]
C_SOURCE = r"""
#include <stdlib.h>
#include <time.h>

volatile unsigned long sink;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

__attribute__((noinline)) unsigned long sl_hot(unsigned long n)
{
	unsigned long x = n;
	for (unsigned long i = 0; i < n; i++) {
		x = x * 6364136223846793005UL + i;
		__asm__ volatile("" : "+r"(x));
	}
	return x;
}

__attribute__((noinline)) unsigned long sl_inner(unsigned long n)
{
	unsigned long r = sl_hot(n);
	__asm__ volatile("" : "+r"(r));
	return r + 1;
}

__attribute__((noinline)) unsigned long sl_outer(unsigned long n)
{
	unsigned long r = sl_inner(n);
	__asm__ volatile("" : "+r"(r));
	return r + 2;
}

int main(int argc, char **argv)
{
	double end = now() + (argc > 1 ? atoi(argv[1]) : 30) / 1000.0;
	while (now() < end)
		sink += sl_outer(20000);
	return 0;
}
"""
PY_CHAIN = ["<module>", "outer", "inner", "hot"]
PY_SOURCE = """import sys, time
def hot(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) % 1000003
    return x
def inner(n):
    return hot(n)
def outer(n):
    return inner(n)
end = time.monotonic() + int(sys.argv[1]) / 1000
while time.monotonic() < end:
    outer(2000)
"""


def build(work: Path, programs: int, seed: int) -> tuple[Path, str]:
    """Compile the C program and write the loop; (loop script, python3 path)."""
    exe = work / C_NAME
    src = work / f"{C_NAME}.c"
    src.write_text(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-fomit-frame-pointer", "-o", str(exe), str(src)], check=True)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else shutil.which("python3") or "python3"
    rng = random.Random(seed)
    lines = ["#!/bin/sh", f"PY='{PY_SOURCE}'"]
    for i in range(programs):
        ms = rng.randint(20, 50)
        lines.append(f"{exe} {ms}" if i % 2 == 0 else f'{python} -c "$PY" {ms}')
    loop = work / "loop.sh"
    loop.write_text("\n".join(lines) + "\n")
    return loop, python


def fleetprof_samples(loop: Path, out: Path, cache: Path) -> tuple[list[Sample], str]:
    """`fleetprof record -F 99 --format pprof -- sh LOOP`: its samples and its summary line."""
    cmd = [*fleetprof_command(), "record", "-F", str(RATE), "--format", "pprof", "-o", str(out), "--"]
    env = dict(os.environ, FLEETPROF_CACHE_DIR=str(cache))
    run = subprocess.run([*cmd, "sh", str(loop)], capture_output=True, text=True, env=env, timeout=600)
    summary = parse_summary(run.stderr)
    if run.returncode != 0 or not out.exists():
        raise RuntimeError(f"fleetprof record failed ({run.returncode}): {run.stderr.strip()[-300:]}")
    stacks, _ = load_python_pprof(out)
    samples = []
    for s in stacks:
        frames = tuple(Frame(f.name, f.where if f.kind == "native" else "", f.kind) for f in s.frames)
        samples.append(Sample(s.process, s.pid, frames, s.count))
    note = f"{summary.samples} samples, whole stacks {summary.whole_pct:.1f}%" if summary else "no summary"
    return samples, note


def perf_run(loop: Path, data: Path, comms: list[str]) -> list[Sample]:
    """`perf record -F 99 --call-graph dwarf -- sh LOOP`, unwound and named by `perf script`."""
    cmd = [PERF, "record", "-q", "-N", "-F", str(RATE), "--call-graph", "dwarf", "-o", str(data)]
    subprocess.run([*cmd, "--", "sh", str(loop)], capture_output=True, check=True, timeout=600)
    return perf_samples(data, comms, PERF)


def chain_verdict(sample: Sample, with_python: bool) -> str:
    """Why a sample of the known chains is not whole ("" when it is): in the C chain it must reach main
    (sl_* right under main, in order); Python frames (fleetprof's) must be named, and outer/inner/hot must
    sit under the program's <module>."""
    names = [f.name for f in sample.user if f.kind == "native"]
    inchain = [n for n in names if n in C_CHAIN[1:]]
    if inchain:
        at = names.index("main") + 1 if "main" in names else -1
        if at < 0 or names[at : at + len(inchain)] != C_CHAIN[1 : 1 + len(inchain)]:
            return "C chain not under main"
    python = [f.name for f in sample.user if f.kind == "python"]
    if with_python and python:
        if any(n.startswith("<unknown") for n in python):
            return "Python frames unnamed"
        ours = [n for n in python if n in PY_CHAIN[1:]]  # start-up runs importlib's frames called from C
        if ours and python[: len(ours) + 1] != PY_CHAIN[: len(ours) + 1]:
            return "Python chain not under <module>"
    return ""


def judge(
    samples: list[Sample], python_name: str, with_python: bool
) -> tuple[dict[str, Share], Counter[str]]:
    """Shares for the C program, the Python one and both; the reasons of the samples that are not whole."""
    shares = {"C": Share(), "Python": Share(), "all": Share()}
    reasons: Counter[str] = Counter()
    for s in samples:
        kind = "C" if s.process == C_NAME else "Python" if s.process == python_name else None
        if kind is None:
            continue
        if not s.user:
            shares[kind].no_user += s.count
            shares["all"].no_user += s.count
            continue
        why = verdict(s) or chain_verdict(s, with_python)
        shares[kind].add(not why, s.count)
        shares["all"].add(not why, s.count)
        if why:
            reasons[f"{kind}: {why}"] += s.count
            BROKEN[render(s)] += s.count
    return shares, reasons


BROKEN: Counter[str] = Counter()


def render(s: Sample, edge: int = 4) -> str:
    """The stack's user frames, root first, the middle elided."""
    names = [f"{f.name} [{f.module}]" if f.module else f.name for f in s.user]
    if len(names) > 2 * edge:
        names = [*names[:edge], "…", *names[-edge:]]
    return f"{s.process}: " + ";".join(names)


def row(label: str, shares: dict[str, Share], extra: str = "") -> None:
    print(f"{label:<30} {shares['all']!s:>22} {shares['C']!s:>22} {shares['Python']!s:>22} {extra}")


def main() -> int:
    """Build, record with each profiler, judge, print; the last line is the headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=300, help="programs the loop runs")
    parser.add_argument("--seed", type=int, default=1, help="seed of the programs' run times")
    args = parser.parse_args()
    if shutil.which("gcc") is None:
        print("needs gcc to build the C program (make setup installs it)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fleetprof-bench-"))
    try:
        loop, python = build(work, args.programs, args.seed)
        python_name = Path(python).name[:15]
        print(
            f"{args.programs} programs of 20-50 ms ({C_NAME}: C without frame pointers; {python_name} -c), "
            f"one after the other, {RATE} Hz; whole share (whole/judged)"
        )
        print(f"{'profiler':<30} {'all':>22} {'C':>22} {'Python':>22}")
        results: dict[str, dict[str, Share]] = {}
        reasons: dict[str, Counter[str]] = {}
        cache = work / "cache"
        for label in ("fleetprof, cold cache", "fleetprof, warm cache"):
            BROKEN.clear()
            try:
                samples, note = fleetprof_samples(loop, work / "fp.pb.gz", cache)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                print(f"headline: not measured, fleetprof could not record: {exc}")
                return 1
            results[label], reasons[label] = judge(samples, python_name, with_python=True)
            row(label, results[label], f"({note})")
            worst = BROKEN.most_common(3)
        if Path(PERF).exists():
            try:
                perf = perf_run(loop, work / "perf.data", [C_NAME, python_name])
            except subprocess.SubprocessError as exc:
                print(f"perf could not record, its row is left out: {exc}")
            else:
                results["perf dwarf"], reasons["perf dwarf"] = judge(perf, python_name, with_python=False)
                row("perf --call-graph dwarf", results["perf dwarf"], "(Python: native frames only)")
        else:
            print(f"{PERF} is not installed (apt-get install linux-perf): perf's row is left out")
        left_out = {k: v["all"].no_user for k, v in results.items()}
        print(f"samples without user frames, left out: {', '.join(f'{k} {v}' for k, v in left_out.items())}")
        for label, why in reasons.items():
            print(f"not whole, {label}: " + (", ".join(f"{r} {n}" for r, n in why.most_common()) or "none"))
        if worst:
            print("fleetprof's commonest non-whole stacks (warm cache):")
            for text, n in worst:
                print(f"  {n:5d}  {text}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cold, warm = results["fleetprof, cold cache"]["all"], results["fleetprof, warm cache"]["all"]
    peer = results.get("perf dwarf")
    versus = "perf not run"
    if peer is not None:
        p = peer["all"]
        ratio = f"{cold.pct / p.pct:.2f}x" if p.pct > 0 else "n/a"
        versus = f"perf --call-graph dwarf {p.pct:.1f}% (fleetprof cold / perf: {ratio})"
    unnamed = reasons["fleetprof, cold cache"]["Python: Python frames unnamed"]
    unwound = 100 * (cold.whole + unnamed) / cold.judged if cold.judged else float("nan")
    print(
        f"headline: short-lived programs ({args.programs} x 20-50 ms, C and Python), whole samples: "
        f"fleetprof {cold.pct:.1f}% cold cache / {warm.pct:.1f}% warm (goal >= 99.5%; cold, with unnamed "
        f"Python frames counted whole: {unwound:.1f}%) vs {versus}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
