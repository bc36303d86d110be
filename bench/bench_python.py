"""CPython stacks against py-spy, same scripts, same interpreters, same run.

1. Completeness and lines: tests/bpf/pyscripts/chain.py and callback.py under every interpreter, recorded
   whole by `fleetprof record -F 999` and by `py-spy record -r 999 -f raw` (`--native` for callback.py).
   Per tool: share of `hot` samples with the whole chain <module> > main > outer > middle > inner > hot;
   share with every line right too (callers on their call lines, hot in its body); overlap of the two
   tools' distributions of hot's line; share of json `pydefault` samples with the C encoder's frames
   between iterencode and pydefault (py-spy merges native frames only with --native).
2. Cost of Python unwinding, per 1,000 Python samples of chain.py: the agent's CPU while sampling
   (ProfilerCore in this process, after a warm-up), the symbolization at the end, and the sampling BPF
   programs' own run_time_ns / run_cnt (fdinfo, BPF_ENABLE_STATS) per run, per sample recorded and per
   user frame; py-spy's CPU for the same samples (marginal: a 6 s minus a 2 s run).
3. Target slowdown: a fixed amount of Python work (it times itself) alone, under fleetprof at 999 Hz, under
   py-spy at 999 Hz (pausing, its default) and py-spy --nonblocking; 11 rounds, each running every
   configuration once in a rotated order; the median of the per-round (paired) slowdowns and its quartiles.

    .venv/bin/python bench/bench_python.py [--quick] [--interpreters 3.8.18,3.12.1,...]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import bpf_stats, sampling_run_time, spread  # noqa: E402
from test_python_common import (  # noqa: E402
    INTERPRETERS,
    SCRIPTS,
    Frame,
    Interpreter,
    Stack,
    body_lines,
    chain,
    fleetprof_command,
    load_pprof,
    python_mismatch,
)

from fleetprof.agent.build import build_profile  # noqa: E402
from fleetprof.agent.core import CoreOptions, ProfilerCore  # noqa: E402
from fleetprof.tracer import layout  # noqa: E402
from fleetprof.tracer.aggregate import decode_frames  # noqa: E402

PYSPY = str(Path(sys.executable).with_name("py-spy"))
HAVE_PYSPY = Path(PYSPY).exists()
RATE = 999
OLD_PYTHON = Interpreter(
    "3.7.16", Path("/root/.pyenv/versions/3.7.16/bin/python3.7"), 7, "libpython3.7m.so.1.0", True
)
CHAIN = ["<module>", "main", "outer", "middle", "inner", "hot"]
WORK = """
import sys, time
def hot(n):
    total = 0
    for i in range(n):
        total += i * i
    return total
def inner(n): return hot(n)
def middle(n): return inner(n)
def outer(n): return middle(n)
start = time.perf_counter()
for _ in range(int(sys.argv[1])):
    outer(20000)
print(time.perf_counter() - start, flush=True)
"""


# ---- running the tools ----------------------------------------------------------------------------------


def fleetprof_stacks(cmd: list[str], out: Path, cache: Path) -> list[Stack]:
    """`fleetprof record -F 999 --format pprof -- CMD` to the end; its stacks (a note when few are Python)."""
    args = [*fleetprof_command(), "record", "-F", str(RATE), "--format", "pprof", "-o", str(out), "--", *cmd]
    env = dict(os.environ, FLEETPROF_CACHE_DIR=str(cache))
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=300)
    stacks, stats = load_pprof(out)
    with_python = sum(s.count for s in stacks if s.python)
    if with_python < sum(s.count for s in stacks) / 2:  # these scripts spend their time in Python code
        counters = {k: v for k, v in stats.items() if k.startswith("python")}
        print(f"  (fleetprof: few samples with Python frames, {with_python}, in {cmd[1]}: {counters})")
    return stacks


def pyspy_frame(text: str) -> Frame:
    """One py-spy raw frame: `name (file:line)` (Python or native with --native) or `0xaddr (module)`."""
    m = re.fullmatch(r"(.*) \((.*?)(?::(\d+))?\)", text)
    if m is None:
        return Frame("native", text)
    name, where, line = m.group(1), m.group(2), int(m.group(3) or 0)
    if where.endswith(".py") or where.startswith("<"):
        return Frame("python", name, where, line)
    return Frame("native", name, os.path.basename(where))


def pyspy_stacks(args: list[str], out: Path) -> tuple[list[Stack], float]:
    """`py-spy record -r 999 -f raw ARGS` to the end: its stacks and the CPU seconds py-spy used."""
    proc = subprocess.Popen(
        [PYSPY, "record", "-r", str(RATE), "-f", "raw", "-o", str(out), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        print(f"  (py-spy {' '.join(args[:3])}… exited with {proc.returncode})")
    stacks = []
    for line in out.read_text(errors="replace").splitlines() if out.exists() else []:
        text, _, count = line.rpartition(" ")
        frames = tuple(pyspy_frame(f) for f in text.split(";"))
        stacks.append(Stack(0, 0, "", "", frames, int(count)))
    return stacks, usage.ru_utime + usage.ru_stime


# ---- section 1: completeness and lines --------------------------------------------------------------------


def share(stacks: Iterable[Stack], ok: Callable[[Stack], bool]) -> tuple[float, int]:
    """(share of samples passing `ok`, samples) over `stacks`, weighted by count."""
    total = good = 0
    for s in stacks:
        total += s.count
        good += s.count if ok(s) else 0
    return (good / total if total else float("nan")), total


def leaf(stacks: list[Stack], name: str) -> list[Stack]:
    return [s for s in stacks if s.leaf_python == name]


@dataclass
class ChainResult:
    whole: float
    lines: float
    samples: int
    hot_lines: Counter[int]


NO_RESULT = ChainResult(float("nan"), float("nan"), 0, Counter())


def judge_chain(stacks: list[Stack]) -> ChainResult:
    """Whole-chain and right-lines shares of `hot` samples, and the distribution of hot's line. chain.py
    spends nearly all its time in hot: a run without any hot sample lost its Python frames and scores 0."""
    expected = chain("chain.py", CHAIN, body_lines("chain.py", "hot"))
    hot = leaf(stacks, "hot")
    whole, n = share(hot, lambda s: [f.short for f in s.python] == CHAIN and not s.has_error)
    lines, _ = share(hot, lambda s: not s.has_error and python_mismatch(s, expected, "chain.py") == "")
    if n == 0:
        whole = lines = 0.0
    dist: Counter[int] = Counter()
    for s in hot:
        if [f.short for f in s.python] == CHAIN:
            dist[s.python[-1].line] += s.count
    return ChainResult(whole, lines, n, dist)


def overlap(a: Counter[int], b: Counter[int]) -> float:
    """Sum over lines of min(share in a, share in b): 1.0 when both tools see the same line mix."""
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return float("nan")
    return sum(min(a[k] / ta, b[k] / tb) for k in a.keys() | b.keys())


def encoder_between(stack: Stack) -> bool:
    """The C encoder's frames sit between iterencode and pydefault (a whole json callback stack)."""
    names = [f.short for f in stack.python]
    if names[-2:] != ["iterencode", "pydefault"] or stack.has_error:
        return False
    between = stack.between(len(names) - 2, len(names) - 1)
    return any(f.where.startswith("_json") or f.name.startswith("encoder_") for f in between)


def sort_between(stack: Stack) -> bool:
    """Native frames (builtin_sorted, list_sort... in libpython) sit between sort_caller and pykey."""
    names = [f.short for f in stack.python]
    if names[-2:] != ["sort_caller", "pykey"] or stack.has_error:
        return False
    return any(f.kind == "native" for f in stack.between(len(names) - 2, len(names) - 1))


def cell(fp: tuple[float, int], ps: tuple[float, int]) -> str:
    """`fp% (n) / py-spy% (n)`."""
    return f"{pct(fp[0])} ({fp[1]}) / {pct(ps[0])} ({ps[1]})"


def section_completeness(interps: list[Interpreter], seconds: float, work: Path) -> dict[str, float]:
    print(f"== 1. completeness and lines, {seconds:g} s per run, {RATE} Hz (fleetprof / py-spy)")
    print(
        f"{'interpreter':<13} {'whole chain':>17} {'lines right':>17} {'hot-line overlap':>17} "
        f"{'json: C encoder frames in place':>33} {'sorted: C frames in place':>30}"
    )
    totals: dict[str, list[float]] = {k: [] for k in ("fp_whole", "ps_whole", "fp_lines", "ps_lines")}
    totals.update({k: [] for k in ("fp_json", "ps_json", "fp_sort", "ps_sort")})
    for i in interps:
        cmd = [str(i.executable), str(SCRIPTS / "chain.py"), str(seconds)]
        fp = judge_chain(fleetprof_stacks(cmd, work / f"fp-chain-{i.name}.pb.gz", work / "cache"))
        ps = (
            judge_chain(pyspy_stacks(["--", *cmd], work / f"ps-chain-{i.name}.txt")[0])
            if HAVE_PYSPY
            else NO_RESULT
        )
        cb = [str(i.executable), str(SCRIPTS / "callback.py"), str(seconds)]
        fp_cb = fleetprof_stacks(cb, work / f"fp-cb-{i.name}.pb.gz", work / "cache")
        ps_cb = pyspy_stacks(["--native", "--", *cb], work / f"ps-cb-{i.name}.txt")[0] if HAVE_PYSPY else []
        fp_json = share(leaf(fp_cb, "pydefault"), encoder_between)
        ps_json = share(leaf(ps_cb, "pydefault"), encoder_between)
        fp_sort = share(leaf(fp_cb, "pykey"), sort_between)
        ps_sort = share(leaf(ps_cb, "pykey"), sort_between)
        print(
            f"{i.name:<13} {pct(fp.whole):>8} / {pct(ps.whole):<6} {pct(fp.lines):>8} / {pct(ps.lines):<6} "
            f"{pct(overlap(fp.hot_lines, ps.hot_lines)):>17} {cell(fp_json, ps_json):>33} "
            f"{cell(fp_sort, ps_sort):>30}"
        )
        values = {
            "fp_whole": fp.whole,
            "ps_whole": ps.whole,
            "fp_lines": fp.lines,
            "ps_lines": ps.lines,
            "fp_json": fp_json[0],
            "ps_json": ps_json[0],
            "fp_sort": fp_sort[0],
            "ps_sort": ps_sort[0],
        }
        for key, value in values.items():
            totals[key].append(value)
    return {k: min((x for x in v if x == x), default=float("nan")) for k, v in totals.items()}


def pct(x: float) -> str:
    return "-" if x != x else f"{x:.1%}"


def ms(x: float) -> str:
    return "-" if x != x else f"{x:.1f} ms"


def us(x: float) -> str:
    return "-" if x != x else f"{x:.2f} us"


def times(x: float) -> str:
    return "-" if x != x else f"{x:.1f}x"


# ---- section 2: cost --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Counts:
    """What the aggregator holds so far: every sample and its user frames, and the target's samples."""

    samples: int
    user_frames: int
    target: int
    target_python: int


def counts(core: ProfilerCore, pid: int) -> Counts:
    """Samples and user frames of every process (all the BPF programs unwound), and `pid`'s samples (with
    at least one Python frame among them)."""
    samples = frames = n = py = 0
    for key, c in core.aggregator.stacks.items():
        user = len(key.frames) // layout.FRAME_SIZE - key.num_kernel
        samples += c.count
        frames += c.count * user
        if key.pid == pid:
            n += c.count
            decoded = decode_frames(key.frames[key.num_kernel * layout.FRAME_SIZE :])
            py += c.count if any(f.kind == layout.FRAME_PYTHON for f in decoded) else 0
    return Counts(samples, frames, n, py)


@dataclass
class Cost:
    agent_ms: float  # agent CPU while sampling, per 1,000 samples of the Python process
    bpf_run_us: float  # sampling programs' run time per own run (every CPU's ticks, filtered ones too)
    bpf_sample_us: float  # the same run time per sample they recorded
    bpf_frame_ns: float  # the same run time per user frame they unwound
    frames: float  # user frames per recorded sample
    python_share: float  # share of the target's samples with Python frames
    build_s: float  # building the profile at the end (symbolization), once
    pyspy_ms: float  # py-spy CPU per 1,000 samples (pausing); nan when not measured
    pyspy_nb_ms: float  # py-spy --nonblocking

    @property
    def total_ms(self) -> float:
        """fleetprof's CPU per 1,000 samples, agent and BPF."""
        return self.agent_ms + self.bpf_sample_us


def fleetprof_cost(interp: Interpreter, seconds: float, work: Path, with_pyspy: bool) -> Cost:
    """Profile chain.py under `interp` in this process (after a 1 s warm-up) for `seconds`; then py-spy."""
    target = subprocess.Popen([str(interp.executable), str(SCRIPTS / "chain.py"), str(4 * seconds + 30)])
    try:
        time.sleep(0.5)
        core = ProfilerCore(CoreOptions(frequency_hz=RATE, pids=(target.pid,), cache_dir=work / "cache"))
        core.load()
        core.scan([target.pid])
        core.start()
        warm_until = time.monotonic() + 1.0
        while time.monotonic() < warm_until:
            core.poll(50)
        cpu0, (ns0, runs0), c0 = time.process_time(), sampling_run_time(), counts(core, target.pid)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            core.poll(50)
        cpu1, (ns1, runs1), c1 = time.process_time(), sampling_run_time(), counts(core, target.pid)
        core.stop()
        build0 = time.process_time()
        build_profile(core)
        build1 = time.process_time()
        core.close()
        nan = float("nan")
        pyspy = marginal_pyspy(target.pid, seconds, work, []) if with_pyspy else nan
        pyspy_nb = marginal_pyspy(target.pid, seconds, work, ["--nonblocking"]) if with_pyspy else nan
    finally:
        target.kill()
        target.wait()
    n = max(c1.target - c0.target, 1)
    recorded = max(c1.samples - c0.samples, 1)
    ns = ns1 - ns0
    return Cost(
        agent_ms=(cpu1 - cpu0) / n * 1e6,
        bpf_run_us=ns / max(runs1 - runs0, 1) / 1e3,
        bpf_sample_us=ns / recorded / 1e3,
        bpf_frame_ns=ns / max(c1.user_frames - c0.user_frames, 1),
        frames=(c1.user_frames - c0.user_frames) / recorded,
        python_share=(c1.target_python - c0.target_python) / n,
        build_s=build1 - build0,
        pyspy_ms=pyspy,
        pyspy_nb_ms=pyspy_nb,
    )


def section_cost(interps: list[Interpreter], seconds: float, work: Path) -> dict[str, Cost]:
    print(f"\n== 2. CPU per 1,000 samples of chain.py while sampling ({RATE} Hz, {seconds:g} s measured)")
    print(
        "  BPF: the sampling programs' run_time_ns (fdinfo, BPF_ENABLE_STATS) per run of their own (every "
        "CPU's tick, filtered ones too), per sample recorded and per user frame unwound"
    )
    print(
        f"{'interpreter':<13} {'Python':>7} {'agent':>9} {'BPF/run':>9} {'BPF/sample':>11} {'frames':>7} "
        f"{'BPF/frame':>10} {'= total':>9} {'py-spy':>9} {'py-spy nonblk':>14} {'py-spy/fleetprof':>17} "
        f"{'profile build':>14}"
    )
    out: dict[str, Cost] = {}
    baseline = OLD_PYTHON if OLD_PYTHON.executable.exists() else None
    with bpf_stats() as measured:
        if not measured:
            print("  (BPF_ENABLE_STATS refused: BPF time not measured)")
        for i in [*interps, *([baseline] if baseline else [])]:
            cost = fleetprof_cost(i, seconds, work, with_pyspy=HAVE_PYSPY and i is not baseline)
            if not measured:
                cost.bpf_run_us = cost.bpf_sample_us = cost.bpf_frame_ns = float("nan")
            print(
                f"{i.name:<13} {pct(cost.python_share):>7} {ms(cost.agent_ms):>9} {us(cost.bpf_run_us):>9} "
                f"{us(cost.bpf_sample_us):>11} {cost.frames:>7.1f} {cost.bpf_frame_ns:>7.0f} ns "
                f"{ms(cost.total_ms):>9} {ms(cost.pyspy_ms):>9} {ms(cost.pyspy_nb_ms):>14} "
                f"{times(cost.pyspy_ms / cost.total_ms):>17} {cost.build_s:>12.2f} s"
            )
            if i is baseline:
                walked = [c.bpf_sample_us for c in out.values()]
                extra = statistics.mean(walked) - cost.bpf_sample_us if walked else float("nan")
                print(
                    f"  {i.name} is not walked (too old): its BPF time is native unwinding alone; walking "
                    f"Python frames adds about {extra:.1f} µs a sample"
                )
            else:
                out[i.name] = cost
    print("  (agent and total: ms per 1,000 samples of the target; BPF/run and BPF/sample: µs)")
    return out


def marginal_pyspy(pid: int, seconds: float, work: Path, flags: list[str]) -> float:
    """py-spy CPU ms per 1,000 samples: (long run - short run) / (their sample difference)."""
    runs = []
    for duration in (2, 2 + round(seconds)):  # py-spy takes whole seconds
        stacks, cpu = pyspy_stacks(["--pid", str(pid), "-d", str(duration), *flags], work / "ps-cost.txt")
        runs.append((cpu, sum(s.count for s in stacks if s.python)))
    (c0, n0), (c1, n1) = runs
    return (c1 - c0) / max(n1 - n0, 1) * 1e6


# ---- section 3: slowdown ----------------------------------------------------------------------------------


def timed_work(
    cmd_prefix: list[str],
    output: Path | None,
    python: str,
    script: Path,
    iterations: int,
    env: dict[str, str],
) -> tuple[float, int]:
    """(seconds the fixed work took as the work script measured it, samples the profiler wrote to `output`)
    under `cmd_prefix` (a profiler, or nothing)."""
    if output is not None:
        output.unlink(missing_ok=True)
    out = subprocess.run(
        [*cmd_prefix, python, str(script), str(iterations)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=600,
    ).stdout
    seconds = float(next(line for line in reversed(out.splitlines()) if re.fullmatch(r"[0-9.e+-]+", line)))
    samples = 0
    if output is not None and output.exists():
        samples = sum(int(line.rpartition(" ")[2]) for line in output.read_text().splitlines() if line)
    return seconds, samples


def section_slowdown(interps: list[Interpreter], rounds: int, work: Path) -> dict[str, dict[str, float]]:
    """Each round runs every configuration once, in an order rotated from round to round; a round's
    slowdown is its time over the same round's unprofiled time (paired), reported as median and
    quartiles over the rounds. A quartile range that spans 0 means the figure is within the noise."""
    print(
        f"\n== 3. target slowdown, fixed work, {RATE} Hz asked, {rounds} interleaved rounds (order rotated): "
        "median of the per-round slowdowns [quartiles], Hz got"
    )
    script = work / "work.py"
    script.write_text(WORK)
    env = dict(os.environ, FLEETPROF_CACHE_DIR=str(work / "cache"))
    folded, raw = work / "slow.folded", work / "slow.txt"
    fp = [*fleetprof_command(), "record", "-F", str(RATE), "-o", str(folded), "--"]
    ps = [PYSPY, "record", "-r", str(RATE), "-f", "raw", "-o", str(raw)]
    configs: dict[str, tuple[list[str], Path | None]] = {"none": ([], None), "fleetprof": (fp, folded)}
    if HAVE_PYSPY:
        configs["py-spy"] = ([*ps, "--"], raw)
        configs["py-spy --nonblocking"] = ([*ps, "--nonblocking", "--"], raw)
    print(f"{'interpreter':<13} " + " ".join(f"{name:>34}" for name in configs))
    out: dict[str, dict[str, float]] = {}
    names = list(configs)
    for i in interps:
        python = str(i.executable)
        probe, _ = timed_work([], None, python, script, 20, env)
        iterations = max(20, int(20 * 1.5 / max(probe, 1e-3)))  # about 1.5 s of work without a profiler
        times: dict[str, list[float]] = {name: [] for name in configs}
        rates: dict[str, list[float]] = {name: [] for name in configs}
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                prefix, output = configs[name]
                seconds, samples = timed_work(prefix, output, python, script, iterations, env)
                times[name].append(seconds)
                rates[name].append(samples / seconds)
        out[i.name] = {}
        cells = [f"{statistics.median(times['none']):>32.2f} s"]
        for name in names[1:]:
            med, lo, hi = spread([t / b - 1 for t, b in zip(times[name], times["none"], strict=True)])
            out[i.name][name] = med
            noise = "~" if lo <= 0 <= hi else " "
            cells.append(
                f"{med:>+6.1%} [{lo:>+6.1%},{hi:>+6.1%}]{noise} {statistics.median(rates[name]):>5.0f} Hz"
            )
        print(f"{i.name:<13} " + " ".join(cells))
    print("  (~: the quartiles of the per-round slowdowns span 0, within this machine's noise)")
    return out


# ---- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interpreters", help="comma-separated names (default: all present)")
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer rounds")
    args = parser.parse_args()
    present = [i for i in INTERPRETERS if i.executable.exists()]
    if args.interpreters:
        wanted = set(args.interpreters.split(","))
        present = [i for i in present if i.name in wanted]
    missing = [i.name for i in INTERPRETERS if not i.executable.exists()]
    if missing:
        print(f"not installed, left out: {', '.join(missing)}")
    seconds = 1.5 if args.quick else 3.0
    heavy = [i for i in present if i.name in ("3.8.18", "3.12.1")] or present[:1]
    if not HAVE_PYSPY:
        print(f"{PYSPY} is not installed (pip install py-spy): py-spy's columns are left out")
    with tempfile.TemporaryDirectory(prefix="bench-python-") as tmp:
        work = Path(tmp)
        complete = section_completeness(present, seconds, work)
        costs = section_cost(heavy, 2.0 if args.quick else 4.0, work)
        slow = section_slowdown(heavy, 3 if args.quick else 11, work)
    nan = float("nan")
    agent = max(c.total_ms for c in costs.values())
    bpf_run = max(c.bpf_run_us for c in costs.values())
    bpf_frame = max(c.bpf_frame_ns for c in costs.values())
    pyspy = max(c.pyspy_ms for c in costs.values())
    pyspy_nb = max(c.pyspy_nb_ms for c in costs.values())
    fp_slow = max(s["fleetprof"] for s in slow.values())
    ps_slow = max(s.get("py-spy", nan) for s in slow.values())
    nb_slow = max(s.get("py-spy --nonblocking", nan) for s in slow.values())
    c = complete
    print(
        f"\nheadline (worst interpreter): whole Python chains fleetprof {pct(c['fp_whole'])} vs py-spy "
        f"{pct(c['ps_whole'])}, lines right {pct(c['fp_lines'])} vs {pct(c['ps_lines'])}, "
        f"C frames in place (json/sorted) {pct(c['fp_json'])}/{pct(c['fp_sort'])} vs "
        f"{pct(c['ps_json'])}/{pct(c['ps_sort'])}; CPU per 1,000 samples {agent:.0f} ms "
        f"(BPF {bpf_run:.1f} us a run, {bpf_frame:.0f} ns a frame) vs py-spy {pyspy:.0f} ms (pausing) / "
        f"{pyspy_nb:.0f} ms "
        f"(--nonblocking); target slowdown at {RATE} Hz (median of paired rounds) {fp_slow:+.1%} vs py-spy "
        f"{ps_slow:+.1%} (pausing) / {nb_slow:+.1%} (--nonblocking)"
    )


if __name__ == "__main__":
    main()
