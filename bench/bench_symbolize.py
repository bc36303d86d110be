"""Symbolization speed and agreement on the largest binaries here, against addr2line and llvm-symbolizer.

For each binary: 20,000 addresses sampled inside function symbols (nm -S), compared like for like with
`addr2line -f -i -C` and `llvm-symbolizer` in the same run. Cold: a fresh fleetprof symbolizer without a
cache (builds it, then answers every address) against one fresh peer process answering the same
addresses on stdin. Warm: a loaded fleetprof symbolizer that has answered 20,000 other addresses against
a long-running peer process that has answered the same 20,000 others, both timing the same new batch.
Also the cache's build and load times and agreement with addr2line. The last line is the headline.

    .venv/bin/python bench/bench_symbolize.py [--count N] [BINARY ...]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import CLONE_SUFFIX, functions, llvm_symbolizer_cmd, run_tool, sample, warm_peer_time

from fleetprof.elf.debugfile import find_debug_file
from fleetprof.elf.reader import read_elf_info
from fleetprof.process.fileid import file_id
from fleetprof.symbolize import NativeFile, NativeSymbolizer

DEFAULT_BINARIES = [
    "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
    "/usr/bin/node",
    "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
]


def addr2line_names(output: str) -> dict[int, list[str]]:
    """Function names per address, outermost first, from `addr2line -a -f -i -C`."""
    result: dict[int, list[str]] = {}
    blocks = re.split(r"^(0x[0-9a-f]+)\n", output, flags=re.M)[1:]
    for head, body in zip(blocks[::2], blocks[1::2], strict=True):
        result[int(head, 16)] = body.rstrip("\n").splitlines()[::2][::-1]
    return result


def same(mine: str, theirs: str, starts: dict[str, int]) -> bool:
    """Same function: equal names (modulo clone suffixes), a bare DWARF name, or aliases of one address."""
    a, b = CLONE_SUFFIX.sub("", mine), CLONE_SUFFIX.sub("", theirs)
    if a == b or (a in starts and starts.get(a) == starts.get(b)):
        return True
    short = b if "::" not in b else a if "::" not in a else ""
    other = a if short is b else b
    return bool(short) and (other.endswith("::" + short) or f"::{short}(" in other)


def bench_one(path: str, count: int) -> dict[str, float] | None:
    if not os.path.exists(path):
        print(f"{path}: missing, skipped")
        return None
    funcs, starts = functions(path)
    if not funcs:
        print(f"{path}: no function symbols, skipped")
        return None
    count = min(count, sum(size for _, size in funcs) // 2)
    addrs = sample(funcs, count)
    warmup = sample(funcs, count, seed=7)  # what warm processes answered before the timed batch
    info = read_elf_info(path)
    file = NativeFile(file_id(path, info.build_id), path)
    cache = tempfile.mkdtemp(prefix="fleetprof-bench-")
    try:
        cold = NativeSymbolizer(cache_dir=cache)
        t0 = time.perf_counter()
        cold.symbolize(file, addrs[:1])
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        mine = cold.symbolize(file, addrs)
        lookup = time.perf_counter() - t0
        warm = NativeSymbolizer(cache_dir=cache)
        t0 = time.perf_counter()
        warm.symbolize(file, addrs[:1])
        load = time.perf_counter() - t0
        warm.symbolize(file, warmup)
        t0 = time.perf_counter()
        warm.symbolize(file, addrs)
        warm_lookup = time.perf_counter() - t0
        bare = NativeSymbolizer(cache_dir=cache, start_lines=False)
        t0 = time.perf_counter()
        bare.symbolize(file, addrs[:1])
        load_bare = time.perf_counter() - t0
        t0 = time.perf_counter()
        bare.symbolize(file, addrs)
        lookup_bare = time.perf_counter() - t0
        cache_bytes = sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file())
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    a2l_cmd = ["addr2line", "-a", "-f", "-i", "-C", "-e", path]
    a2l_time, a2l_out = run_tool(a2l_cmd, addrs)
    a2l_warm = warm_peer_time(a2l_cmd, warmup, addrs)
    llvm_time = llvm_warm = math.nan
    if shutil.which("llvm-symbolizer"):
        llvm_cmd = llvm_symbolizer_cmd(path)
        llvm_time, _ = run_tool(llvm_cmd, addrs)
        llvm_warm = warm_peer_time(llvm_cmd, warmup, addrs)
    else:
        print("  (llvm-symbolizer is not installed: apt-get install llvm; its figures are left out)")
    theirs = addr2line_names(a2l_out)
    outer_ok = chain_ok = 0
    for addr in addrs:
        ours = [f.function for f in mine[addr]]
        ref = theirs.get(addr, [])
        ref = [] if ref == ["??"] else ref
        unknown_both = not ref and "+0x" in ours[0]
        if (ref and same(ours[0], ref[0], starts)) or unknown_both:
            outer_ok += 1
        chain = len(ours) == len(ref) and all(same(x, y, starts) for x, y in zip(ours, ref, strict=True))
        if chain or unknown_both:
            chain_ok += 1
    n = len(addrs)
    cold_s = build + lookup  # a fresh symbolizer, no cache: build the cache, then answer every address
    row = {
        "build": build,
        "load": load,
        "rate": n / lookup,
        "rate_bare": n / lookup_bare,
        "warm_rate": n / warm_lookup,
        "a2l_rate": n / a2l_time,
        "llvm_rate": n / llvm_time,
        "cold_a2l": a2l_time / cold_s,
        "cold_llvm": llvm_time / cold_s,
        "warm_a2l": a2l_warm / warm_lookup,
        "warm_llvm": llvm_warm / warm_lookup,
        "outer": outer_ok / n,
        "chain": chain_ok / n,
    }
    name = os.path.basename(path)
    size_mb = os.path.getsize(path) / 1e6
    debug = find_debug_file(path, info.build_id, info.debuglink, info.debuglink_crc)
    dwarf = "DWARF" if info.has_debug_info else "debug file" if debug else "symbols only"
    print(
        f"{name} ({size_mb:.0f} MB, {dwarf}, {n} addrs): cold build {build:.2f} s, "
        f"warm load {load_bare * 1e3:.1f} ms ({load * 1e3:.1f} ms with the start-line index), "
        f"cache {cache_bytes / 1e6:.1f} MB"
    )
    print(
        f"  cold (nothing loaded, every address once): fleetprof {cold_s:.2f} s, addr2line {a2l_time:.2f} s, "
        f"llvm-symbolizer {llvm_time:.2f} s: fleetprof x{row['cold_a2l']:.1f} addr2line, "
        f"x{row['cold_llvm']:.1f} llvm-symbolizer"
    )
    print(
        f"  warm (loaded, {n} new addresses after {len(warmup)} others) lookups/s: fleetprof "
        f"{row['warm_rate']:,.0f}, addr2line {n / a2l_warm:,.0f}, llvm-symbolizer {n / llvm_warm:,.0f}: "
        f"fleetprof x{row['warm_a2l']:.1f} addr2line, x{row['warm_llvm']:.1f} llvm-symbolizer"
    )
    print(
        f"  right after the build: fleetprof {row['rate']:,.0f} lookups/s (no start lines "
        f"{row['rate_bare']:,.0f}); agreement with addr2line: outer function {row['outer']:.2%}, "
        f"whole inline chain {row['chain']:.2%}"
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="*", default=DEFAULT_BINARIES)
    parser.add_argument("--count", type=int, default=20_000)
    args = parser.parse_args()
    rows = [r for r in (bench_one(p, args.count) for p in args.binaries) if r is not None]
    if not rows:
        print("headline: no binaries to measure")
        return 1

    def geo(key: str) -> str:
        vals = [r[key] for r in rows if r[key] == r[key]]
        if not vals:
            return "n/a"
        mean = math.exp(sum(math.log(x) for x in vals) / len(vals))
        return f"x{mean:.1f} (x{min(vals):.1f}..x{max(vals):.1f})"

    worst_build = max(r["build"] for r in rows)
    worst_load = max(r["load"] for r in rows)
    outer = sum(r["outer"] for r in rows) / len(rows)
    print(
        f"headline: {len(rows)} binaries, fleetprof's speed over its peers, like for like (geo-mean, range): "
        f"cold {geo('cold_a2l')} addr2line, {geo('cold_llvm')} llvm-symbolizer; warm {geo('warm_a2l')} "
        f"addr2line, {geo('warm_llvm')} llvm-symbolizer; cold build <= {worst_build:.2f} s, warm load <= "
        f"{worst_load * 1e3:.0f} ms, outer-name agreement {outer:.2%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
