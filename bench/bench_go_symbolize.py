"""Go symbolization from the pclntab against `go tool addr2line` and llvm-symbolizer, on a big Go binary.

The binary (default: `cmd/pprof` built here with the installed go, 14 MB with DWARF) is stripped into
a copy for fleetprof; the peers read the unstripped one (llvm-symbolizer needs its DWARF).

N distinct addresses drawn uniformly inside the binary's functions (its own pclntab lists them), the
same addresses for everyone, in the same run, best of three:
- fleetprof cold: open the (stripped) binary, find and parse its pclntab, answer every address with
  inlined frames (`GoSymbols`); warm: a loaded table answering a new batch; end to end through
  `NativeSymbolizer` (which also builds the binary's SymCache); central: the agent's bundle built, then
  a fresh `CentralSymbolizer` answering from it (plus the bundle's size against the binary);
- `go tool addr2line` (pclntab, outer function and innermost file:line, no inlining), one process;
- `llvm-symbolizer -i` on the unstripped binary (DWARF, with inlining), one process, cold and warm.
Also how often fleetprof's outer function and innermost file:line agree with `go tool addr2line`.

    .venv/bin/python bench/bench_go_symbolize.py [--count N] [BINARY]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import llvm_symbolizer_cmd, run_tool, warm_peer_time

from fleetprof.symbolize import CentralSymbolizer, NativeFile, NativeSymbolizer, build_bundle
from fleetprof.symbolize.golang import GoElf
from fleetprof.symbolize.golang.symbols import open_go_symbols

REPEAT = 3
DEFAULT_PACKAGE = "cmd/pprof"
FILE_ID = "60" * 16


def build_default(work: Path) -> str:
    """`go build cmd/pprof` (unstripped) with the build cache under `work`."""
    out = work / "pprof"
    env = {**os.environ, "GOCACHE": str(work / "gocache"), "GOPATH": str(work / "gopath"), "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-o", str(out), DEFAULT_PACKAGE], env=env, check=True)
    return str(out)


def sample(path: str, count: int, seed: int) -> list[int]:
    """`count` distinct addresses inside the functions of the binary's pclntab."""
    go = GoElf(path)
    if go.table is None:
        raise SystemExit(f"{path}: no pclntab (not a Go binary?)")
    funcs = [(entry, end) for entry, end, _ in go.table.functions() if end > entry]
    go.close()
    rng = random.Random(seed)
    picked: set[int] = set()
    while len(picked) < count:
        entry, end = rng.choice(funcs)
        picked.add(rng.randrange(entry, end))
    return sorted(picked)


def best(run: object, repeat: int = REPEAT) -> float:
    """Fewest seconds of `repeat` calls of `run()`."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def fleetprof_cold(path: str, addrs: list[int]) -> dict[int, tuple]:
    """Open, parse, answer every address."""
    go, problem = open_go_symbols(path)
    if go is None:
        raise SystemExit(f"{path}: {problem or 'no pclntab'}")
    try:
        return {a: go.lookup(a) for a in addrs}
    finally:
        go.close()


def go_addr2line(binary: str, addrs: list[int]) -> tuple[float, dict[int, tuple[str, str, int]]]:
    """Seconds and answers of one `go tool addr2line` process for every address."""
    tool = subprocess.run(["go", "tool", "-n", "addr2line"], capture_output=True, text=True, check=True)
    seconds, out = run_tool([tool.stdout.strip(), binary], addrs)
    lines = out.splitlines()
    answers = {}
    for addr, name, where in zip(addrs, lines[::2], lines[1::2], strict=False):
        file, _, line = where.rpartition(":")
        answers[addr] = (name, file, int(line) if line.isdigit() else 0)
    return seconds, answers


def agreement(mine: dict[int, tuple], theirs: dict[int, tuple[str, str, int]]) -> float:
    """Percent of addresses whose outer function and innermost file:line match go tool addr2line."""
    same = 0
    for addr, (name, file, line) in theirs.items():
        frames = mine.get(addr)
        if (
            frames
            and frames[0].function == name
            and (not line or (frames[-1].file, frames[-1].line) == (file, line))
        ):
            same += 1
    return 100 * same / max(1, len(theirs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "binary", nargs="?", default="", help=f"a Go binary (default: {DEFAULT_PACKAGE} built)"
    )
    parser.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    if shutil.which("go") is None:
        print("go is not installed (make setup installs it)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-go-"))
    binary = args.binary or build_default(work)
    stripped = str(work / "stripped")
    subprocess.run(["strip", "-o", stripped, binary], check=True)
    size = Path(binary).stat().st_size
    addrs = sample(binary, args.count, 1)
    other = sample(binary, args.count, 2)
    n = len(addrs)
    small = Path(stripped).stat().st_size
    print(f"{binary}: {size / 1e6:.1f} MB, stripped copy {small / 1e6:.1f} MB; {n} addresses")

    rows: dict[str, float] = {}
    rows["fleetprof pclntab, cold (stripped)"] = best(lambda: fleetprof_cold(stripped, addrs))
    go, _ = open_go_symbols(stripped)
    assert go is not None
    for a in other:
        go.lookup(a)
    rows["fleetprof pclntab, warm"] = best(lambda: [go.lookup(a) for a in addrs], 1)
    go.close()

    def native() -> None:
        sym = NativeSymbolizer(persist=False, start_lines=False)
        sym.symbolize(NativeFile(FILE_ID, stripped), addrs)

    rows["fleetprof NativeSymbolizer, cold (stripped)"] = best(native)
    t0 = time.perf_counter()
    bundle = build_bundle(NativeFile(FILE_ID, stripped))
    bundle_s = time.perf_counter() - t0

    def central() -> None:
        sym = CentralSymbolizer(
            get_bundle=lambda _id: bundle, cache_dir=work / f"c{time.time_ns()}", debuginfod=None
        )
        sym.symbolize(FILE_ID, "", addrs)

    rows["fleetprof central from the bundle, cold"] = best(central)
    mine = fleetprof_cold(stripped, addrs)
    go_seconds = []
    theirs: dict[int, tuple[str, str, int]] = {}
    for _ in range(REPEAT):
        seconds, theirs = go_addr2line(binary, addrs)
        go_seconds.append(seconds)
    rows["go tool addr2line (no inlining), cold"] = min(go_seconds)
    if shutil.which("llvm-symbolizer"):
        cmd = llvm_symbolizer_cmd(binary)
        rows["llvm-symbolizer -i (DWARF), cold"] = min(run_tool(cmd, addrs)[0] for _ in range(REPEAT))
        rows["llvm-symbolizer -i (DWARF), warm"] = warm_peer_time(cmd, other, addrs)

    inlined = sum(1 for frames in mine.values() if frames and len(frames) > 1)
    share = 100 * len(bundle) / small
    print(
        f"bundle: {len(bundle) / 1e6:.2f} MB ({share:.1f} % of the stripped file), built in {bundle_s:.2f} s"
    )
    print(
        f"inlined chains: {inlined} of {n}; agreement with go tool addr2line: {agreement(mine, theirs):.2f} %"
    )
    peer = rows["go tool addr2line (no inlining), cold"]
    for name, seconds in rows.items():
        rate = n / seconds if seconds and not math.isnan(seconds) else float("nan")
        print(
            f"  {name:48s} {seconds:7.3f} s  {rate / 1e3:8.1f} k addr/s  {peer / seconds:6.2f}x go addr2line"
        )
    cold = rows["fleetprof pclntab, cold (stripped)"]
    llvm = rows.get("llvm-symbolizer -i (DWARF), cold", float("nan"))
    print(
        f"headline: fleetprof Go pclntab symbolization {n / cold / 1e3:.0f} k addr/s cold with inlining "
        f"= {peer / cold:.2f}x go tool addr2line, {llvm / cold:.2f}x llvm-symbolizer -i "
        f"({Path(binary).name}, {n} addresses)"
    )
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
