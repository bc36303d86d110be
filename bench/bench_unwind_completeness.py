"""Unwind completeness on the zoo: fleetprof vs `perf record -g` vs `perf record --call-graph dwarf`, one run.

Every zoo program (tests/bpf/zoo, no frame pointers) is recorded at 999 Hz by each profiler. perf's
callchains are symbolized with fleetprof's own symbolizer (same names, same inline frames), so the same
criterion applies to all three: the share of samples whose leaf is in the program's chain that carry the
whole chain, root to leaf. Also printed: bytes each produced (fleetprof: its sample records' bytes in
the ring buffer, counted as they arrive, and the pprof file; perf: perf.data) and, from a second
fleetprof run with a cold unwind-table cache, the share among each process's first samples against the
rest.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _counting_fleetprof import parse_counts  # noqa: E402
from zoo.build import (  # noqa: E402
    Completeness,
    Frame,
    Stack,
    ZooError,
    by_time,
    load_pprof,
    load_stacks,
    pprof_stacks,
    record,
    record_env,
)
from zoo.programs import CATALOG, ZooProgram, evaluate  # noqa: E402

from fleetprof.process.fileid import file_id  # noqa: E402
from fleetprof.symbolize.native import NativeFile, NativeSymbolizer  # noqa: E402

PERF = "/usr/bin/perf"
FREQ = 999
COUNTING = Path(__file__).resolve().with_name("_counting_fleetprof.py")
FIRST_SAMPLES = 50
_FRAME_LINE = re.compile(r"^\s+([0-9a-f]+) \((.*)\)$")
_HEAD_LINE = re.compile(r"^(.*\S)\s+(\d+)/(\d+)\s*$")


@dataclass(slots=True)
class Outcome:
    """One profiler on one program."""

    stacks: list[Stack] = field(default_factory=list)
    bytes: int = 0  # data produced (ring-buffer records for fleetprof, perf.data for perf)
    file_bytes: int = 0  # the file written
    seconds: float = 0.0  # wall time of recording + post-processing
    error: str = ""


def fleetprof_run(program: ZooProgram, argv: list[str], out: Path, cache: Path) -> Outcome:
    """`fleetprof record` into pprof, with the ring-buffer bytes of its sample records counted as they
    arrive (bench/_counting_fleetprof.py)."""
    begin = time.monotonic()
    cmd = [sys.executable, str(COUNTING), "record", "-F", str(FREQ), "-o", str(out), "--", *argv]
    run = subprocess.run(cmd, capture_output=True, text=True, env=record_env(cache), timeout=300, check=False)
    if run.returncode != 0:
        return Outcome(error=run.stderr.strip().splitlines()[-1] if run.stderr.strip() else "failed")
    counts = parse_counts(run.stderr)
    if counts is None:
        return Outcome(error=f"no byte counts from {COUNTING.name}")
    prof = load_pprof(out)
    return Outcome(pprof_stacks(prof), counts["ring_bytes"], out.stat().st_size, time.monotonic() - begin)


class PerfSymbols:
    """Names perf's (file, file offset) frames with fleetprof's symbolizer."""

    def __init__(self, cache: Path) -> None:
        self.native = NativeSymbolizer(cache_dir=cache / "symbols")
        self.files: dict[str, tuple[NativeFile, list[tuple[int, int, int]]] | None] = {}

    def _file(self, dso: str) -> tuple[NativeFile, list[tuple[int, int, int]]] | None:
        if dso not in self.files:
            try:
                with open(dso, "rb") as f:
                    loads = [
                        (seg["p_offset"], seg["p_filesz"], seg["p_vaddr"])
                        for seg in ELFFile(f).iter_segments()
                        if seg["p_type"] == "PT_LOAD"
                    ]
                self.files[dso] = (NativeFile(file_id=file_id(dso, ""), path=dso), loads)
            except (OSError, ELFError):
                self.files[dso] = None
        return self.files[dso]

    def frames(self, dso: str, offset: int) -> list[Frame]:
        """The frames (outermost first) at file offset `offset` of `dso` (perf prints file offsets, which
        differ from ELF addresses for non-PIE executables and lld's layouts)."""
        module = Path(dso).name
        if dso.startswith("[") or not dso.startswith("/"):
            return [Frame(f"{dso}+0x{offset:x}", dso if dso.startswith("[") else "")]
        got = self._file(dso)
        if got is None:
            return [Frame(f"{module}+0x{offset:x}", module)]
        nf, loads = got
        addr = next((va + offset - off for off, size, va in loads if off <= offset < off + size), offset)
        named = self.native.symbolize(nf, [addr]).get(addr, ())
        return [Frame(f.function, module) for f in named] or [Frame(f"{module}+0x{addr:x}", module)]


def perf_stacks(data: Path, program: ZooProgram, symbols: PerfSymbols, return_minus_one: bool) -> list[Stack]:
    """Stacks of a perf.data file via `perf script`; `return_minus_one` for callchains of raw return
    addresses (frame pointers), which perf prints as they are; its DWARF unwinder prints call sites."""
    text = subprocess.run(
        [PERF, "script", "--no-inline", "--max-stack", "1024", "-i", str(data), "-F", "comm,pid,tid,ip,dso"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    counts: dict[tuple[str, int, tuple[Frame, ...]], int] = defaultdict(int)
    for block in text.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        head = _HEAD_LINE.match(lines[0])
        if head is None:
            continue
        comm, pid = head.group(1), int(head.group(2))
        leaf_first: list[list[Frame]] = []
        for i, line in enumerate(lines[1:]):
            m = _FRAME_LINE.match(line)
            if m is None:
                continue
            addr, dso = int(m.group(1), 16), m.group(2)
            if dso == "[kernel.kallsyms]" or addr >= 1 << 63:
                leaf_first.append([Frame("kernel", "", "kernel")])
                continue
            if return_minus_one and i > 0 and leaf_first and leaf_first[-1][0].kind != "kernel":
                addr -= 1
            leaf_first.append(symbols.frames(dso, addr))
        frames = tuple(f for group in reversed(leaf_first) for f in group)
        process = "perf" if comm == "perf" else program.name
        counts[(process, pid, frames)] += 1
    return [Stack(p, frames, n, pid) for (p, pid, frames), n in counts.items()]


def perf_run(program: ZooProgram, argv: list[str], out: Path, mode: str, symbols: PerfSymbols) -> Outcome:
    """`perf record -F 999` with `-g` or `--call-graph dwarf`."""
    if not Path(PERF).exists():
        return Outcome(error=f"{PERF} is not installed (apt-get install linux-perf)")
    callgraph = ["-g"] if mode == "fp" else ["--call-graph", "dwarf"]
    begin = time.monotonic()
    proc = subprocess.run(
        [PERF, "record", "-q", "-F", str(FREQ), *callgraph, "-o", str(out), "--", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not out.exists():
        return Outcome(error=(proc.stderr.strip().splitlines() or ["failed"])[-1])
    stacks = perf_stacks(out, program, symbols, return_minus_one=mode == "fp")
    size = out.stat().st_size
    return Outcome(stacks, size, size, time.monotonic() - begin)


def _cell(got: Completeness | None) -> str:
    if got is None:
        return "n/a"
    return f"{100 * got.share:5.1f}% ({got.selected:5d})"


def _size(n: int) -> str:
    return f"{n / 1e6:7.2f} MB" if n >= 100_000 else f"{n / 1e3:7.1f} kB"


def main() -> int:
    """Run every profiler on every zoo program and print the tables; the last line is the headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="run time of each program")
    parser.add_argument("programs", nargs="*", default=list(CATALOG), help="zoo programs (default: all)")
    args = parser.parse_args()
    if shutil.which("gcc") is None:
        print("needs gcc to build the zoo (make setup installs it)", file=sys.stderr)
        return 2
    if not Path(PERF).exists():
        print(f"{PERF} is not installed (apt-get install linux-perf): perf's columns are left out")
    work = Path(tempfile.mkdtemp(prefix="fleetprof-bench-"))
    build = work / "build"
    build.mkdir()
    symbols = PerfSymbols(work / "cache-perf")
    rows: list[tuple[str, dict[str, Outcome]]] = []
    early: list[tuple[str, Completeness, Completeness]] = []
    try:
        for name in args.programs:
            program = CATALOG[name]
            try:
                argv = program.command(build, args.seconds)
            except ZooError as exc:
                print(f"{name}: build failed: {exc}", file=sys.stderr)
                continue
            # one cache per program: zoo binaries built from the same source share a build id (the
            # stripped and MiniDebugInfo ones), and a shared cache would name them from their full twin
            cache = work / f"cache-{name}"
            speed = work / f"{name}.speedscope.json"
            if record(["--", *argv], speed, cache_dir=cache).returncode == 0:  # cold cache
                first, rest = by_time(load_stacks(speed), program.chains, name, FIRST_SAMPLES)
                early.append((name, first, rest))
            runs = {
                "fleetprof": fleetprof_run(program, argv, work / f"{name}.pb.gz", cache),  # now warm
                "perf -g": perf_run(program, argv, work / f"{name}.fp.data", "fp", symbols),
                "perf dwarf": perf_run(program, argv, work / f"{name}.dwarf.data", "dwarf", symbols),
            }
            rows.append((name, runs))
            for what, got in runs.items():
                if got.error:
                    print(f"{name}: {what}: {got.error}", file=sys.stderr)
    finally:
        symbols.native.close()
        shutil.rmtree(work, ignore_errors=True)
    return report(rows, early, args.seconds)


def report(rows: list[tuple[str, dict[str, Outcome]]], early: list, seconds: float) -> int:
    """Print the tables and the headline."""
    tools = ["fleetprof", "perf -g", "perf dwarf"]
    print(f"whole-chain share of in-chain samples (count), {FREQ} Hz, {seconds:g} s per program")
    print(f"{'program':16s}" + "".join(f"{t:>20s}" for t in tools))
    worst = {t: (1.0, "") for t in tools}
    results: dict[tuple[str, str], Completeness] = {}
    for name, runs in rows:
        cells = []
        for t in tools:
            got = None if runs[t].error else evaluate(CATALOG[name], runs[t].stacks)["program"]
            if got is not None:
                results[(name, t)] = got
                worst[t] = min(worst[t], (got.share, name))
            cells.append(_cell(got))
        print(f"{name:16s}" + "".join(f"{c:>20s}" for c in cells))
    print()
    print("per leaf group (fleetprof / perf dwarf)")
    for name, runs in rows:
        if runs["fleetprof"].error or runs["perf dwarf"].error:
            continue
        ours = evaluate(CATALOG[name], runs["fleetprof"].stacks)
        theirs = evaluate(CATALOG[name], runs["perf dwarf"].stacks)
        for group in CATALOG[name].groups:
            print(f"  {name:16s} {group:20s} {_cell(ours[group]):>18s} {_cell(theirs[group]):>18s}")
    print()
    print("data produced")
    cols = ("fleetprof ring", "fleetprof pprof", "perf -g", "perf dwarf", "dwarf/ring")
    print(f"{'program':16s}" + "".join(f"{c:>16s}" for c in cols))
    byte_ratios = []
    for name, runs in rows:
        ring, pprof = runs["fleetprof"].bytes, runs["fleetprof"].file_bytes
        fp, dwarf = runs["perf -g"].bytes, runs["perf dwarf"].bytes
        ratio = f"{dwarf / ring:.1f}x" if ring else "n/a"
        if ring and dwarf:
            byte_ratios.append(dwarf / ring)
        cells = (_size(ring), _size(pprof), _size(fp), _size(dwarf), ratio)
        print(f"{name:16s}" + "".join(f"{c:>16s}" for c in cells))
    print()
    print(f"first {FIRST_SAMPLES} samples of each process vs the rest (fleetprof, cold unwind-table cache)")
    for name, first, rest in early:
        print(f"  {name:16s} first: {first.summary():40s} rest: {rest.summary()}")
    print()
    pooled = {}
    for t in tools:
        got = [results[(n, t)] for n, _ in rows if (n, t) in results]
        pooled[t] = sum(c.whole for c in got) / max(sum(c.selected for c in got), 1)
    for t in tools[1:]:
        ratio = f"{pooled['fleetprof'] / pooled[t]:.2f}x" if pooled[t] >= 0.01 else "n/a (peer below 1%)"
        ours, theirs = 100 * pooled["fleetprof"], 100 * pooled[t]
        print(f"pooled whole-chain share: fleetprof {ours:.1f}% vs {t} {theirs:.1f}%: {ratio}")
    low = ", ".join(f"{t} {100 * worst[t][0]:.1f}% ({worst[t][1]})" for t in tools)
    median = statistics.median(byte_ratios) if byte_ratios else 0.0
    print(
        f"headline: pooled whole-chain share fleetprof {100 * pooled['fleetprof']:.1f}%, "
        f"perf -g {100 * pooled['perf -g']:.1f}%, perf dwarf {100 * pooled['perf dwarf']:.1f}%; "
        f"worst program: {low}; perf dwarf wrote {median:.0f}x the bytes of fleetprof's ring buffer (median)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
