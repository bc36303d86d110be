"""Many big new binaries at once: ten copies of `node`, each with its own build id, started together.

Each copy of the node binary (about 100 MB, 2.8 MB of .eh_frame) gets a distinct GNU build id (bytes of its
.note.gnu.build-id descriptor changed), so a profiler meets ten new files at once, as on a busy host
starting big programs. All ten run a small CPU-bound JavaScript loop (outer -> inner -> hot) for 12 s,
recorded at 99 Hz by `fleetprof record --all` (fresh unwind-table cache), then by `perf record -a -g` and
`perf record -a --call-graph dwarf` in the same run, each profiler started and attached before the copies
start. Whole share of the copies' samples per bench/_wholeness.py (no `[unwind:` frame, outermost frame
where a process or thread starts), overall and over each copy's first samples. The last line is the headline.

    .venv/bin/python bench/bench_many_new_binaries.py [--copies 10] [--seconds 12] [--node /usr/bin/node]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from elftools.elf.elffile import ELFFile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "bpf"))

from _common import holds_perf_events, parse_summary  # noqa: E402
from _wholeness import Frame, Sample, Share, perf_samples, whole  # noqa: E402
from zoo.build import fleetprof_command, parse_speedscope  # noqa: E402

PERF = "/usr/bin/perf"
RATE = 99
FIRST = 20  # samples of each copy counted as its first ones (about its first second: 10 copies, 2 CPUs)
JS = """
function hot(n) { let x = 0; for (let i = 0; i < n; i++) { x = (x * 31 + i) % 1000003; } return x; }
function inner(n) { return hot(n); }
function outer(n) { return inner(n); }
const end = Date.now() + Number(process.argv[2]) * 1000;
let sink = 0;
while (Date.now() < end) { sink += outer(100000); }
"""


def copy_with_build_id(node: Path, out: Path, index: int) -> str:
    """`node` copied to `out` with its build id's last bytes changed by `index`; the new build id."""
    shutil.copyfile(node, out)
    out.chmod(0o755)
    with open(out, "r+b") as f:
        section = ELFFile(f).get_section_by_name(".note.gnu.build-id")
        if section is None:
            raise RuntimeError(f"{node} has no .note.gnu.build-id")
        offset = section["sh_offset"]
        f.seek(offset)
        namesz, descsz = int.from_bytes(f.read(4), "little"), int.from_bytes(f.read(4), "little")
        desc_at = offset + 12 + (namesz + 3) // 4 * 4
        f.seek(desc_at)
        desc = bytearray(f.read(descsz))
        desc[-1] ^= index + 1
        desc[-2] ^= 0xA5
        f.seek(desc_at)
        f.write(desc)
    return desc.hex()


def start_copies(copies: list[Path], script: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """All copies at once."""
    return [subprocess.Popen([str(c), str(script), f"{seconds:g}"]) for c in copies]


def wait_attached(proc: subprocess.Popen[str], what: str, timeout: float = 120) -> None:
    """Until `proc` holds perf events (it samples), then a second more for its first polls."""
    end = time.monotonic() + timeout
    while not holds_perf_events(proc.pid):
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"{what} did not start: {proc.communicate()[1][-300:]}")
        time.sleep(0.05)
    time.sleep(1.0)


def profile_copies(
    argv: list[str],
    what: str,
    copies: list[Path],
    script: Path,
    seconds: float,
    env: dict[str, str] | None = None,
) -> tuple[list[int], float, str]:
    """Start the profiler, then the copies; when they end, SIGINT the profiler; (copies' pids, the CPU
    seconds they used, its stderr)."""
    prof = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_attached(prof, what)
        procs = start_copies(copies, script, seconds)
        cpu = 0.0
        for p in procs:
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
        prof.send_signal(signal.SIGINT)
        _, err = prof.communicate(timeout=900)
    finally:
        if prof.poll() is None:
            prof.kill()
            prof.wait()
    return [p.pid for p in procs], cpu, err


def shares(samples: list[Sample]) -> tuple[Share, Share, Share]:
    """(all, first FIRST samples of each copy, the rest); samples in time order per process."""
    total, first, rest = Share(), Share(), Share()
    seen: dict[int, int] = {}
    for s in samples:
        if not s.user:
            total.no_user += s.count
            continue
        ok = whole(s)
        total.add(ok, s.count)
        early = max(min(FIRST - seen.get(s.pid, 0), s.count), 0)
        first.add(ok, early)
        rest.add(ok, s.count - early)
        seen[s.pid] = seen.get(s.pid, 0) + s.count
    return total, first, rest


def kept(samples: list[Sample], cpu: float) -> float:
    """Samples of the copies over those their CPU time asks for at RATE (a profiler that drops samples
    could otherwise look whole)."""
    return sum(s.count for s in samples) / max(cpu * RATE, 1)


def fleetprof_run(
    work: Path, copies: list[Path], script: Path, seconds: float
) -> tuple[list[Sample], float, str]:
    """`fleetprof record --all -F 99 --format speedscope` around the copies; their samples in time order."""
    out = work / "fp.speedscope.json"
    argv = [
        *fleetprof_command(),
        "record",
        "--all",
        "-F",
        str(RATE),
        "--format",
        "speedscope",
        "-o",
        str(out),
    ]
    env = dict(os.environ, FLEETPROF_CACHE_DIR=str(work / "cache"))
    pids, cpu, err = profile_copies([*argv, "--duration", "3600"], "fleetprof", copies, script, seconds, env)
    if not out.exists():
        raise RuntimeError(f"fleetprof wrote no profile: {err.strip()[-300:]}")
    summary = parse_summary(err)
    wanted = set(pids)
    samples = []
    for s in parse_speedscope(json.loads(out.read_text()), 1_000_000_000 // RATE):
        if s.pid in wanted:
            frames = tuple(Frame(f.name, f.module, f.kind) for f in s.frames)
            samples.append(Sample(s.process, s.pid, frames, s.count))
    note = f"whole stacks of the host {summary.whole_pct:.1f}%" if summary else "no summary line"
    return samples, cpu, note


def perf_run(
    work: Path, mode: str, copies: list[Path], script: Path, seconds: float
) -> tuple[list[Sample], float]:
    """`perf record -a -F 99` with `-g` or `--call-graph dwarf` around the copies, read by `perf script`."""
    data = work / f"perf-{mode}.data"
    callgraph = ["-g"] if mode == "fp" else ["--call-graph", "dwarf"]
    argv = [PERF, "record", "-q", "-N", "-a", "-F", str(RATE), *callgraph, "-o", str(data)]
    _, cpu, _ = profile_copies(argv, f"perf {mode}", copies, script, seconds)
    return perf_samples(data, [c.name for c in copies], PERF), cpu


def main() -> int:
    """Copy, run under each profiler, judge, print; the last line is the headline."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--node", default=shutil.which("node") or "/usr/bin/node")
    args = parser.parse_args()
    node = Path(args.node)
    if not node.exists():
        print(f"{node} is not installed (apt-get install nodejs): nothing to measure")
        print("headline: not measured, no node binary")
        return 0
    work = Path(tempfile.mkdtemp(prefix="fleetprof-bench-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # remove the copies on the way out
    try:
        script = work / "burn.js"
        script.write_text(JS)
        copies = [work / f"node{i}" for i in range(args.copies)]
        ids = [copy_with_build_id(node, c, i) for i, c in enumerate(copies)]
        size = node.stat().st_size / 1e6
        print(
            f"{args.copies} copies of {node} ({size:.0f} MB), distinct build ids (…{ids[0][-6:]}, "
            f"…{ids[1][-6:]}, …), started together, {args.seconds:g} s of a JS loop, {RATE} Hz"
        )
        print(
            f"{'profiler':<26} {'whole (all)':>22} {f'first {FIRST} per copy':>22} {'the rest':>22} "
            f"{'samples / CPU time x Hz':>24}"
        )
        results: dict[str, tuple[Share, Share, Share]] = {}
        try:
            samples, cpu, note = fleetprof_run(work, copies, script, args.seconds)
        except (RuntimeError, subprocess.SubprocessError) as exc:
            print(f"headline: not measured, fleetprof could not record: {exc}")
            return 1
        results["fleetprof --all"] = shares(samples)
        share_kept = {"fleetprof --all": kept(samples, cpu)}
        extra = {"fleetprof --all": f"({note})"}
        if Path(PERF).exists():
            for mode, label in (("fp", "perf -a -g"), ("dwarf", "perf -a --call-graph dwarf")):
                try:
                    got, cpu = perf_run(work, mode, copies, script, args.seconds)
                    results[label] = shares(got)
                    share_kept[label] = kept(got, cpu)
                except (RuntimeError, subprocess.SubprocessError) as exc:
                    print(f"{label} could not record, its row is left out: {exc}")
        else:
            print(f"{PERF} is not installed (apt-get install linux-perf): perf's rows are left out")
        for label, (total, first, rest) in results.items():
            print(
                f"{label:<26} {total!s:>22} {first!s:>22} {rest!s:>22} {share_kept[label]:>24.0%} "
                f"{extra.get(label, '')}"
            )
        left_out = ", ".join(f"{k} {v[0].no_user}" for k, v in results.items())
        print(f"samples without user frames, left out: {left_out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ours, ours_kept = results["fleetprof --all"], share_kept["fleetprof --all"]
    peers = ", ".join(
        f"{label} {v[0].pct:.1f}% ({share_kept[label]:.0%} kept; ratio {ours[0].pct / v[0].pct:.2f}x)"
        if v[0].pct > 0
        else f"{label} 0%"
        for label, v in results.items()
        if label != "fleetprof --all"
    )
    print(
        f"headline: {args.copies} new node copies started together, whole samples: fleetprof "
        f"{ours[0].pct:.1f}% (first {FIRST} per copy {ours[1].pct:.1f}%, {ours_kept:.0%} of the samples "
        f"their CPU time asks for) vs {peers or 'perf not run'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
