"""Unwind-table compilation speed: .eh_frame to table, cached reload, against readelf, symbolic, pyelftools.

For each binary: .eh_frame size, FDEs, rows, compile time (best of --repeat), ms per MB of .eh_frame,
table bytes per FDE, and reload time from the on-disk cache (best of 5). Peers in the same run:
`readelf --debug-dump=frames-interp` to /dev/null (binutils' CFI interpreter, in C), symbolic's CfiCache
(Rust, emits breakpad STACK CFI text) and, for sections under 1 MB, pyelftools' CFI decoder. Prints
ratios; --verify also cross-checks every table against readelf's rows. The last line is the headline.

    .venv/bin/python bench/bench_unwind_tables.py [--repeat N] [--verify] [BINARY ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fleetprof.elf.view import ElfView
from fleetprof.nativeunwind.cache import UnwindTableCache
from fleetprof.nativeunwind.compiler import compile_unwind_table
from fleetprof.nativeunwind.crosscheck import crosscheck, parse_readelf, run_readelf

DEFAULT_BINARIES = [
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0",
    "/usr/lib/x86_64-linux-gnu/libstdc++.so.6",
    "/usr/bin/node",
    "/usr/lib/jvm/java-17-openjdk-amd64/lib/server/libjvm.so",
]
PYELFTOOLS_MAX_MB = 1.0


def best_ms(fn: Callable[[], object], repeat: int) -> float:
    """Fastest of `repeat` runs, in ms: the figure least disturbed by other load on the machine."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def readelf_run(path: str) -> None:
    subprocess.run(["readelf", "--debug-dump=frames-interp", path], stdout=subprocess.DEVNULL, check=False)


def symbolic_run(path: str) -> Callable[[], object] | None:
    """A CfiCache build of `path`, or None when symbolic is not installed."""
    try:
        from symbolic import Archive, CfiCache
    except ImportError:
        return None

    def build() -> object:
        obj = Archive.open(path).get_object(arch="x86_64")
        return CfiCache.from_object(obj)

    return build


def pyelftools_run(path: str) -> None:
    """pyelftools' decoded CFI tables for every FDE (its unknown-opcode failures are skipped)."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as stream:
        for entry in ELFFile(stream).get_dwarf_info().EH_CFI_entries():
            if hasattr(entry, "get_decoded"):
                try:
                    entry.get_decoded()
                except Exception:
                    continue


def eh_frame_mb(path: str) -> float:
    with ElfView(path) as elf:
        sec = elf.sections.get(".eh_frame")
        return (sec.size if sec else 0) / 1e6


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(peer: float | None, ours: float) -> str:
    return "-" if peer is None else f"{peer / ours:.2f}x"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("binaries", nargs="*", default=DEFAULT_BINARIES)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best is kept)")
    parser.add_argument("--verify", action="store_true", help="cross-check every table against readelf -wF")
    args = parser.parse_args()
    binaries = [b for b in args.binaries if os.path.exists(b)]
    for missing in sorted(set(args.binaries) - set(binaries)):
        print(f"skipped (not on this machine): {missing}")
    print(
        f"{'file':<22} {'eh MB':>6} {'FDEs':>7} {'rows':>8} {'rules':>5} {'ms':>7} {'ms/MB':>6} {'B/FDE':>6} "
        f"{'reload':>7} {'readelf':>8} {'symbolic':>8} {'pyelftools':>10}  "
        "speed vs readelf/symbolic/pyelftools"
    )
    results: dict[str, tuple[float, float, float, float | None]] = {}
    cache_dir = tempfile.TemporaryDirectory(prefix="bench-unwind-")
    cache = UnwindTableCache(cache_dir.name)
    for path in binaries:
        name = Path(path).name
        mb = eh_frame_mb(path)
        table = compile_unwind_table(path)
        ours = best_ms(lambda p=path: compile_unwind_table(p), args.repeat)
        cache.get(path, name)
        reload = best_ms(lambda p=path, n=name: cache.get(p, n), 5)
        peer_readelf = best_ms(lambda p=path: readelf_run(p), args.repeat)
        sym = symbolic_run(path)
        peer_symbolic = best_ms(sym, args.repeat) if sym else None
        peer_pyelf = best_ms(lambda p=path: pyelftools_run(p), 1) if mb < PYELFTOOLS_MAX_MB else None
        stats = table.stats
        print(
            f"{name:<22} {mb:>6.2f} {stats.fde_count:>7} {table.row_count:>8} {len(table.rules):>5} "
            f"{ours:>7.0f} {ours / mb:>6.0f} {table.bytes_per_fde:>6.1f} {reload:>7.2f} {peer_readelf:>8.0f} "
            f"{fmt(peer_symbolic):>8} {fmt(peer_pyelf):>10}  "
            f"{ratio(peer_readelf, ours)} / {ratio(peer_symbolic, ours)} / {ratio(peer_pyelf, ours)}"
        )
        invalid = sum(stats.invalid.values())
        if invalid or stats.skipped_fdes:
            top = ", ".join(f"{k} {v}" for k, v in sorted(stats.invalid.items(), key=lambda kv: -kv[1])[:4])
            skipped = sum(stats.skipped_fdes.values())
            print(f"{'':<22} rows with an unsupported rule: {invalid} ({top}); skipped FDEs: {skipped}")
        if args.verify:
            check = crosscheck(table, parse_readelf(run_readelf(path)))
            mismatches = len(check.mismatches or [])
            print(
                f"{'':<22} readelf agreement: {check.compared} addresses compared, {mismatches} mismatches, "
                f"{check.not_comparable} expression rows"
            )
        results[name] = (mb, ours, reload, peer_readelf)
    cache_dir.cleanup()
    total_mb = sum(r[0] for r in results.values())
    total_ms = sum(r[1] for r in results.values())
    if results:
        print(f"all: {total_mb:.1f} MB of .eh_frame in {total_ms:.0f} ms ({total_ms / total_mb:.0f} ms/MB)")
    if "node" in results:
        mb, ours, reload, peer = results["node"]
        speed = peer / ours
        versus = f"{speed:.2f}x faster than" if speed >= 1 else f"{1 / speed:.2f}x slower than"
        print(
            f"node: {mb:.1f} MB .eh_frame compiled in {ours:.0f} ms ({versus} readelf -wF), "
            f"cached reload {reload:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
