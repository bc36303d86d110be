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
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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
_CLONE = re.compile(r"( \[clone [^\]]+\]|\.(cold|constprop|isra|part|lto_priv)(\.\d+)?)+$")


def functions(path: str) -> tuple[list[tuple[int, int]], dict[str, int]]:
    """(start, size) of sized text symbols (.symtab, else .dynsym), and demangled name -> start.

    Aliases also come from the separate debug file's .symtab, when there is one.
    """
    info = read_elf_info(path)
    debug = find_debug_file(path, info.build_id, info.debuglink, info.debuglink_crc)
    funcs, starts = _nm(path)
    if debug:
        starts = {**_nm(debug)[1], **starts}
    return funcs, starts


def _nm(path: str) -> tuple[list[tuple[int, int]], dict[str, int]]:
    for flags in (["-S"], ["-D", "-S"]):
        out = subprocess.run(
            ["nm", "-C", *flags, "--defined-only", path], capture_output=True, text=True
        ).stdout
        funcs, starts = [], {}
        for line in out.splitlines():
            parts = line.split(maxsplit=3)
            if len(parts) == 4 and parts[2] in "tTwWi" and int(parts[1], 16) > 0:
                funcs.append((int(parts[0], 16), int(parts[1], 16)))
                starts[_CLONE.sub("", parts[3].split("@")[0])] = int(parts[0], 16)
        if funcs:
            return funcs, starts
    return [], {}


def sample(funcs: list[tuple[int, int]], count: int, seed: int = 42) -> list[int]:
    """`count` distinct addresses inside the functions, drawn with `seed`."""
    rng = random.Random(seed)
    addrs: set[int] = set()
    while len(addrs) < count:
        start, size = rng.choice(funcs)
        addrs.add(start + rng.randrange(size))
    return sorted(addrs)


def run_tool(cmd: list[str], addrs: list[int]) -> tuple[float, str]:
    text = "\n".join(hex(a) for a in addrs) + "\n"
    t0 = time.perf_counter()
    done = subprocess.run(cmd, input=text, capture_output=True, text=True)
    return time.perf_counter() - t0, done.stdout


SENTINEL = 0xFFFF_FFFF_FFF0  # an address no binary here maps: its echo marks the end of a batch


class WarmPeer:
    """A long-running `addr2line -a …` or `llvm-symbolizer --addresses …` fed addresses on stdin, as a
    symbolizer service would keep it: `timed` answers one batch (every address, then the sentinel) and
    returns the seconds it took until the sentinel's echo came back."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def timed(self, addrs: list[int]) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        text = "".join(f"{a:#x}\n" for a in addrs) + f"{SENTINEL:#x}\n"
        writer = threading.Thread(target=self._write, args=(text,))
        t0 = time.perf_counter()
        writer.start()
        ends = {f"{SENTINEL:#x}", f"0x{SENTINEL:016x}"}  # llvm-symbolizer's echo, addr2line's
        for line in self.proc.stdout:
            if line.strip() in ends:
                break
        else:
            raise RuntimeError(f"{self.proc.args[0]} ended before answering")
        took = time.perf_counter() - t0
        writer.join()
        return took

    def _write(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()


def warm_peer_time(cmd: list[str], warmup: list[int], addrs: list[int]) -> float:
    """Seconds a warm peer (it has answered `warmup` already) takes for `addrs`; nan when it fails."""
    peer = WarmPeer(cmd)
    try:
        peer.timed(warmup)
        return peer.timed(addrs)
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"  ({cmd[0]} as a warm process failed: {exc})")
        return math.nan
    finally:
        peer.close()


def addr2line_names(output: str) -> dict[int, list[str]]:
    """Function names per address, outermost first, from `addr2line -a -f -i -C`."""
    result: dict[int, list[str]] = {}
    blocks = re.split(r"^(0x[0-9a-f]+)\n", output, flags=re.M)[1:]
    for head, body in zip(blocks[::2], blocks[1::2], strict=True):
        result[int(head, 16)] = body.rstrip("\n").splitlines()[::2][::-1]
    return result


def same(mine: str, theirs: str, starts: dict[str, int]) -> bool:
    """Same function: equal names (modulo clone suffixes), a bare DWARF name, or aliases of one address."""
    a, b = _CLONE.sub("", mine), _CLONE.sub("", theirs)
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
        llvm_cmd = ["llvm-symbolizer", f"--obj={path}", "--addresses", "-f", "-i", "-C"]
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
