"""Central symbolization throughput from symbol bundles, against llvm-symbolizer on the same addresses.

For each binary, two sets of 20,000 distinct addresses inside function symbols: uniform (every address
in a different place, as bench_symbolize.py samples: the worst case for any cache) and profile-shaped
(functions drawn with Zipf weights, several addresses each, as the return addresses and PCs of real
profiles cluster in hot code). The bundle is built once (as an agent would: zstd sections when this
host has the module, which the bundle line names) and its size put against the binary's. Then, like
for like, on each set:
- cold: a fresh `CentralSymbolizer` that has never seen the file gets the uploaded bundle bytes and
  answers every address (decode + lookups, and its disk cache copy written), against one fresh
  `llvm-symbolizer` process with the binary answering the same addresses; also the restart case,
  loading the bundle from the disk cache, and the CPU time of a cold start from the same bundle with
  zlib sections (what an agent without zstd uploads);
- warm: a central symbolizer that has the file loaded and has answered 20,000 other addresses,
  against a long-running llvm-symbolizer that has answered the same others, on the same new batch;
- repeated: the batch again (each (file id, address) is looked up once, then memoized).
Today's host-side symbolizer (`NativeSymbolizer` through `symbolize_mapping`, model frames as central
gives them; start lines read from DWARF on demand) is shown for reference. Every timing is the best
of three fresh runs. The machine may be shared: CPU time is measured too (ours from this process, the
peer's from the kernel's account of its process) and its ratios printed beside the wall-clock ones.
The last line is the headline.

    .venv/bin/python bench/bench_central_symbolize.py [--count N] [BINARY ...]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import WarmPeer, functions, llvm_symbolizer_cmd, run_tool, sample

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.profile.model import Mapping
from fleetprof.symbolize import NativeSymbolizer, symbolize_mapping
from fleetprof.symbolize.bundle import build_bundle, bundle_info, repack
from fleetprof.symbolize.central import CentralSymbolizer

REPEAT = 3  # best of: other work on the machine only ever slows a run down
DEFAULT_BINARIES = ["/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0", "/usr/bin/node"]


def profile_sample(funcs: list[tuple[int, int]], count: int, seed: int) -> list[int]:
    """`count` distinct addresses, their functions drawn with Zipf weights (1/rank) from a shuffled list."""
    rng = random.Random(seed)
    order = funcs[:]
    rng.shuffle(order)
    weights = [1 / (rank + 1) for rank in range(len(order))]
    addrs: set[int] = set()
    while len(addrs) < count:
        for start, size in rng.choices(order, weights, k=count - len(addrs)):
            addrs.add(start + rng.randrange(size))
    return sorted(addrs)


def cold_start(central: CentralSymbolizer, fid: str, build_id: str, addrs: list[int]) -> object:
    """A never-seen file's answers, its disk cache copy written (part of what a cold start costs)."""
    answers = central.symbolize(fid, build_id, addrs)
    central.flush()
    return answers


def timed(call: object, *args: object) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = call(*args)  # type: ignore[operator]
    return time.perf_counter() - t0, result


def cpu_timed(call: object, *args: object) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result) of one call."""
    c0, t0 = time.process_time(), time.perf_counter()
    result = call(*args)  # type: ignore[operator]
    return time.perf_counter() - t0, time.process_time() - c0, result


def children_cpu() -> float:
    """CPU seconds of this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tool_cold(cmd: list[str], addrs: list[int]) -> tuple[float, float]:
    """(wall, CPU) seconds of a fresh peer process answering `addrs`."""
    before = children_cpu()
    wall = run_tool(cmd, addrs)[0]
    return wall, children_cpu() - before


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has had (/proc/PID/schedstat, nanoseconds)."""
    with open(f"/proc/{pid}/schedstat") as stream:
        return int(stream.read().split()[0]) / 1e9


def tool_warm(cmd: list[str], warmup: list[int], addrs: list[int]) -> tuple[float, float]:
    """(wall, CPU) seconds of a warm peer (it has answered `warmup`) answering `addrs`; nan on failure."""
    peer = WarmPeer(cmd)
    try:
        peer.timed(warmup)
        before = process_cpu(peer.proc.pid)
        wall = peer.timed(addrs)
        return wall, process_cpu(peer.proc.pid) - before
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"  ({cmd[0]} as a warm process failed: {exc})")
        return math.nan, math.nan
    finally:
        peer.close()


def bench_one(path: str, count: int, llvm: bool) -> dict[str, float] | None:
    if not os.path.exists(path):
        print(f"{path}: missing, skipped")
        return None
    funcs, _ = functions(path)
    if not funcs:
        print(f"{path}: no function symbols, skipped")
        return None
    count = min(count, sum(size for _, size in funcs) // 4)
    info = read_elf_info(path)
    fid = file_id(path, info.build_id)
    build_s, bundle = timed(build_bundle, path)
    assert isinstance(bundle, bytes)
    sections = {s["name"]: s for s in bundle_info(bundle)["sections"]}
    size = os.path.getsize(path)
    parts = ", ".join(f"{k} {v['size'] / 1e6:.1f} MB" for k, v in sections.items())
    codecs = "/".join(sorted({v["method"] for v in sections.values()}))
    print(
        f"{os.path.basename(path)} ({size / 1e6:.0f} MB): bundle {len(bundle) / 1e6:.1f} MB = "
        f"{len(bundle) / size:.1%} of the binary ({parts}; {codecs}), built in {build_s:.2f} s"
    )
    row = {"bundle_share": len(bundle) / size}
    shapes = {
        "uniform": (sample(funcs, count), sample(funcs, count, seed=7)),
        "profile-shaped": (profile_sample(funcs, count, 42), profile_sample(funcs, count, 7)),
    }
    for shape, (addrs, warmup) in shapes.items():
        row |= {
            f"{shape} {k}": v
            for k, v in compare(shape, path, fid, info.build_id, bundle, addrs, warmup, llvm).items()
        }
    return row


def compare(
    shape: str,
    path: str,
    fid: str,
    build_id: str,
    bundle: bytes,
    addrs: list[int],
    warmup: list[int],
    llvm: bool,
) -> dict[str, float]:
    """Cold, restart, warm and memoized central rates against llvm-symbolizer on `addrs`; prints them.

    Every timing, ours and llvm-symbolizer's, is the best of REPEAT fresh runs (the machine is shared)."""
    cold_s = reload_s = warm_s = repeat_s = host_s = cold_cpu = warm_cpu = zlib_cpu = math.inf
    answers: object = None
    zlib_bundle = repack(bundle, compress="zlib")
    for _ in range(REPEAT):
        work = Path(tempfile.mkdtemp(prefix="fleetprof-central-bench-"))
        try:
            cold = CentralSymbolizer({fid: bundle}.get, work / "cache", debuginfod=None)
            took, cpu, answers = cpu_timed(cold_start, cold, fid, build_id, addrs)
            cold_s, cold_cpu = min(cold_s, took), min(cold_cpu, cpu)
            from_zlib = CentralSymbolizer({fid: zlib_bundle}.get, work / "zlib", debuginfod=None)
            zlib_cpu = min(zlib_cpu, cpu_timed(cold_start, from_zlib, fid, build_id, addrs)[1])
            restart = CentralSymbolizer({}.get, work / "cache", debuginfod=None)
            reload_s = min(reload_s, timed(restart.symbolize, fid, build_id, addrs)[0])
            warm = CentralSymbolizer({}.get, work / "cache", debuginfod=None)
            warm.symbolize(fid, build_id, warmup)
            took, cpu, _ = cpu_timed(warm.symbolize, fid, build_id, addrs)
            warm_s, warm_cpu = min(warm_s, took), min(warm_cpu, cpu)
            took, again = timed(warm.symbolize, fid, build_id, addrs)
            repeat_s = min(repeat_s, took)
            assert again == answers
            host = NativeSymbolizer(cache_dir=work / "host")
            mapping = Mapping(fid, path, build_id)
            symbolize_mapping(host, mapping, addrs[:1])
            symbolize_mapping(host, mapping, warmup)
            host_s = min(host_s, timed(symbolize_mapping, host, mapping, addrs)[0])
        finally:
            shutil.rmtree(work, ignore_errors=True)
    assert isinstance(answers, dict)
    llvm_cold = llvm_warm = llvm_cold_cpu = llvm_warm_cpu = math.nan
    if llvm:
        cmd = llvm_symbolizer_cmd(path)
        colds = [tool_cold(cmd, addrs) for _ in range(REPEAT)]
        warms = [tool_warm(cmd, warmup, addrs) for _ in range(REPEAT)]
        llvm_cold, llvm_cold_cpu = min(w for w, _ in colds), min(c for _, c in colds)
        llvm_warm, llvm_warm_cpu = min(w for w, _ in warms), min(c for _, c in warms)
    n = len(addrs)
    row = {
        "cold": llvm_cold / cold_s,
        "reload": llvm_cold / reload_s,
        "warm": llvm_warm / warm_s,
        "host": llvm_warm / host_s,
        "cold cpu": llvm_cold_cpu / cold_cpu,
        "warm cpu": llvm_warm_cpu / warm_cpu,
        "zlib cold cpu": llvm_cold_cpu / zlib_cpu,
    }
    print(f"  {shape}: {n} addresses ({len(answers)} resolved)")
    print(
        f"    cold (never seen the file, bundle bytes in hand): central {n / cold_s:,.0f}/s, "
        f"llvm-symbolizer {n / llvm_cold:,.0f}/s: x{row['cold']:.2f}; after a restart (disk cache) "
        f"{n / reload_s:,.0f}/s: x{row['reload']:.2f}"
    )
    print(
        f"    warm (new addresses after {len(warmup)} others): central {n / warm_s:,.0f}/s, llvm-symbolizer "
        f"{n / llvm_warm:,.0f}/s: x{row['warm']:.2f}; host-side NativeSymbolizer {n / host_s:,.0f}/s: "
        f"x{row['host']:.2f}; the same batch again (memoized) {n / repeat_s:,.0f}/s"
    )
    print(
        f"    CPU time: cold central {n / cold_cpu:,.0f}/s, llvm-symbolizer {n / llvm_cold_cpu:,.0f}/s: "
        f"x{row['cold cpu']:.2f}; warm central {n / warm_cpu:,.0f}/s, llvm-symbolizer "
        f"{n / llvm_warm_cpu:,.0f}/s: x{row['warm cpu']:.2f}; cold from zlib sections (an agent without "
        f"zstd) {n / zlib_cpu:,.0f}/s: x{row['zlib cold cpu']:.2f}"
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="*", default=DEFAULT_BINARIES)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    llvm = shutil.which("llvm-symbolizer") is not None
    if not llvm:
        print("llvm-symbolizer is not installed (apt-get install llvm): ratios are left out")
    rows = [r for r in (bench_one(p, args.count, llvm) for p in args.binaries) if r is not None]
    if not rows:
        print("headline: no binaries to measure")
        return 1

    def geo(key: str) -> str:
        vals = [r[key] for r in rows if r[key] == r[key]]
        if not vals:
            return "n/a"
        mean = math.exp(sum(math.log(x) for x in vals) / len(vals))
        return f"x{mean:.2f} (x{min(vals):.2f}..x{max(vals):.2f})"

    share = max(r["bundle_share"] for r in rows)
    print(
        f"headline: central symbolization from bundles vs llvm-symbolizer, {len(rows)} binaries (geo-mean, "
        f"range): profile-shaped cold {geo('profile-shaped cold')}, warm {geo('profile-shaped warm')}; "
        f"uniform cold {geo('uniform cold')}, warm {geo('uniform warm')} (host-side today "
        f"{geo('uniform host')}); "
        f"bundles <= {share:.1%} of the binary; CPU time: profile-shaped cold "
        f"{geo('profile-shaped cold cpu')}, "
        f"warm {geo('profile-shaped warm cpu')}; uniform cold {geo('uniform cold cpu')}, "
        f"warm {geo('uniform warm cpu')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
