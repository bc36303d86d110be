"""Central symbolization throughput from symbol bundles, against llvm-symbolizer on the same addresses.

For each binary: 20,000 addresses sampled inside function symbols (as bench_symbolize.py does). The
bundle is built once (as an agent would) and its size put against the binary's. Then, like for like:
- cold: a fresh `CentralSymbolizer` that has never seen the file gets the uploaded bundle bytes and
  answers every address (decode + lookups), against one fresh `llvm-symbolizer` process with the
  binary answering the same addresses; also the restart case, loading the bundle from the disk cache;
- warm: a central symbolizer that has the file loaded and has answered 20,000 other addresses,
  against a long-running llvm-symbolizer that has answered the same others, on the same new batch;
- repeated: the batch again (each (file id, address) is looked up once, then memoized).
Today's host-side symbolizer (`NativeSymbolizer`, start lines read from DWARF on demand) is shown for
reference. The last line is the headline.

    .venv/bin/python bench/bench_central_symbolize.py [--count N] [BINARY ...]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench_symbolize import functions, run_tool, sample, warm_peer_time

from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import NativeFile, NativeSymbolizer
from fleetprof.symbolize.bundle import build_bundle, bundle_info
from fleetprof.symbolize.central import CentralSymbolizer

DEFAULT_BINARIES = ["/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0", "/usr/bin/node"]


def timed(call: object, *args: object) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = call(*args)  # type: ignore[operator]
    return time.perf_counter() - t0, result


def bench_one(path: str, count: int, llvm: bool) -> dict[str, float] | None:
    if not os.path.exists(path):
        print(f"{path}: missing, skipped")
        return None
    funcs, _ = functions(path)
    if not funcs:
        print(f"{path}: no function symbols, skipped")
        return None
    count = min(count, sum(size for _, size in funcs) // 2)
    addrs = sample(funcs, count)
    warmup = sample(funcs, count, seed=7)
    info = read_elf_info(path)
    fid = file_id(path, info.build_id)
    build_s, bundle = timed(build_bundle, path)
    assert isinstance(bundle, bytes)
    sections = {s["name"]: s for s in bundle_info(bundle)["sections"]}
    work = Path(tempfile.mkdtemp(prefix="fleetprof-central-bench-"))
    try:
        store = {fid: bundle}
        cold = CentralSymbolizer(store.get, work / "cache", debuginfod=None)
        cold_s, answers = timed(cold.symbolize, fid, info.build_id, addrs)
        restart = CentralSymbolizer({}.get, work / "cache", debuginfod=None)
        reload_s, _ = timed(restart.symbolize, fid, info.build_id, addrs)
        warm = CentralSymbolizer({}.get, work / "cache", debuginfod=None)
        warm.symbolize(fid, info.build_id, warmup)
        warm_s, _ = timed(warm.symbolize, fid, info.build_id, addrs)
        repeat_s, again = timed(warm.symbolize, fid, info.build_id, addrs)
        assert again == answers
        host = NativeSymbolizer(cache_dir=work / "host")
        native = NativeFile(fid, path)
        host.symbolize(native, addrs[:1])
        host.symbolize(native, warmup)
        host_s, _ = timed(host.symbolize, native, addrs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    llvm_cold = llvm_warm = math.nan
    if llvm:
        cmd = ["llvm-symbolizer", f"--obj={path}", "--addresses", "-f", "-i", "-C"]
        llvm_cold, _ = run_tool(cmd, addrs)
        llvm_warm = warm_peer_time(cmd, warmup, addrs)
    n = len(addrs)
    size = os.path.getsize(path)
    row = {
        "bundle_share": len(bundle) / size,
        "cold_rate": n / cold_s,
        "warm_rate": n / warm_s,
        "cold_ratio": llvm_cold / cold_s,
        "reload_ratio": llvm_cold / reload_s,
        "warm_ratio": llvm_warm / warm_s,
        "host_ratio": llvm_warm / host_s,
    }
    name = os.path.basename(path)
    parts = ", ".join(f"{k} {v['size'] / 1e6:.1f} MB" for k, v in sections.items())
    print(
        f"{name} ({size / 1e6:.0f} MB, {n} addrs, {len(answers)} resolved): bundle "
        f"{len(bundle) / 1e6:.1f} MB = {row['bundle_share']:.1%} of the binary ({parts}), "
        f"built in {build_s:.2f} s"
    )
    print(
        f"  cold (never seen the file, bundle bytes in hand): central {cold_s:.2f} s = {n / cold_s:,.0f}/s, "
        f"llvm-symbolizer {llvm_cold:.2f} s = {n / llvm_cold:,.0f}/s: x{row['cold_ratio']:.2f}; "
        f"after a restart (disk cache) {reload_s:.2f} s: x{row['reload_ratio']:.2f}"
    )
    print(
        f"  warm ({n} new addresses after {len(warmup)} others): central {n / warm_s:,.0f}/s, "
        f"llvm-symbolizer {n / llvm_warm:,.0f}/s: x{row['warm_ratio']:.2f}; host-side NativeSymbolizer "
        f"{n / host_s:,.0f}/s: x{row['host_ratio']:.2f}; repeated batch (memoized) {n / repeat_s:,.0f}/s"
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
        f"range): cold {geo('cold_ratio')}, warm {geo('warm_ratio')} (host-side today {geo('host_ratio')}); "
        f"bundles <= {share:.1%} of the binary"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
