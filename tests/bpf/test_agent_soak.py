"""The agent core over thousands of short-lived processes and a stream of distinct new binaries, one window
at a time as `fleetprof agent` runs it: its RSS, open fds and BPF map entries level off instead of growing
with every process and binary seen (issue 9's long-running hygiene)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fleetprof.agent import core as core_module
from fleetprof.agent.core import CoreOptions, ProfilerCore
from fleetprof.agent.fleet import FleetAgent, FleetOptions
from fleetprof.process.tracker import ProcessTracker
from fleetprof.reporter.backoff import Backoff
from fleetprof.reporter.reporter import Reporter
from fleetprof.reporter.senders import sender_for
from fleetprof.reporter.spool import Spool
from tests.conftest import compile_c
from tests.unit.fake_collector import FakeCollector

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SPIN = r"""
#include <stdlib.h>
int main(int argc, char **argv) {
    volatile unsigned long x = 0;
    long n = argc > 1 ? atol(argv[1]) : 100000;
    for (long i = 0; i < n; i++) x += i;
    return 0;
}
"""
ROUNDS = 10
SHORT_PER_ROUND = 350  # short-lived processes per round (3,500 in all)
NEW_BINARIES_PER_ROUND = 12  # 120 distinct binaries in all
WARM_ROUNDS = 2  # not compared: the first windows fill caches


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def distinct_copy(src: Path, dst: Path, n: int) -> Path:
    """A copy with its own file id (no build id, so the id hashes the content, which a trailer changes)."""
    shutil.copyfile(src, dst)
    with dst.open("ab") as f:
        f.write(f"copy {n}".encode().ljust(4096, b"\0"))
    dst.chmod(0o755)
    return dst


def workload(spin: Path, binaries: list[Path]) -> subprocess.Popen[bytes]:
    """One round: many short processes, then each new binary a few times."""
    new = " ".join(f"{b} 3000000; {b} 3000000;" for b in binaries)
    script = f"i=0; while [ $i -lt {SHORT_PER_ROUND} ]; do {spin} 300000; i=$((i+1)); done; {new}"
    return subprocess.Popen(["sh", "-c", script])


def test_sizes_level_off_over_process_and_binary_churn(
    build_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spin = compile_c(SPIN, build_dir / "soak_spin", "-O1", "-Wl,--build-id=none")
    core = ProfilerCore(CoreOptions(frequency_hz=499, pids=None))
    core.tracker.close()
    core.tracker = ProcessTracker(cache_dir=str(core.options.cache_dir), linger_s=0.5)  # fds close fast
    core.tracker.add_listener(core)
    collector = FakeCollector().start()  # (it keeps what it receives: part of the RSS growth is its own)
    reporter = Reporter(Spool(tmp_path / "spool"), sender_for(collector.url), Backoff(0.05, 0.2))
    agent = FleetAgent(FleetOptions(symbols="off", sweep_s=0.0), reporter, core=core)
    sizes: list[dict[str, int]] = []
    try:
        agent.start()
        # Inodes of unmapped files are kept up to a bound (64 Ki in BPF); here, a small one over the host.
        monkeypatch.setattr(core_module, "INODE_SOFT_LIMIT", len(core._inodes or ()) + 40)
        for rnd in range(ROUNDS):
            binaries = [
                distinct_copy(spin, tmp_path / f"bin{rnd}_{i}", rnd * 100 + i)
                for i in range(NEW_BINARIES_PER_ROUND)
            ]
            proc = workload(spin, binaries)
            while proc.poll() is None:
                core.poll()
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                core.poll()
            agent.emit_window()
            agent.upkeep()
            stats = core.stats()
            sizes.append(
                {
                    "rss_kib": rss_kib(),
                    "fds": len(os.listdir("/proc/self/fd")),
                    "lpm_entries": stats["lpm_entries"],
                    "file_inodes": stats["file_inodes"],
                    "tracked_pids": core.upkeep_stats()["tracked_pids"],
                    "pinned_files": core.upkeep_stats()["pinned_files"],
                    "python_frames": core.upkeep_stats()["python_frames"],
                    "exits": core.tracker.stats().get("exits", 0),
                }
            )
        agent.finish()
    finally:
        agent.close()
        collector.stop()
    report = "\n".join(str(s) for s in sizes)
    early, late = sizes[WARM_ROUNDS : (ROUNDS + WARM_ROUNDS) // 2], sizes[(ROUNDS + WARM_ROUNDS) // 2 :]

    def grown(key: str) -> tuple[int, int]:
        return max(s[key] for s in early), max(s[key] for s in late)

    assert sizes[-1]["exits"] - sizes[0]["exits"] >= 500, f"the core saw too few of the processes:\n{report}"
    assert len(collector.state.accepted()) >= ROUNDS
    # Each late round brings 350 processes and 12 new binaries: a leak would grow these by about that much
    # per round; other processes on the host make them move a little either way.
    before, after = grown("pinned_files")
    assert after <= before + 20, report
    before, after = grown("fds")
    assert after <= before + 20, report
    before, after = grown("file_inodes")
    assert after <= before + 20, report
    before, after = grown("tracked_pids")
    assert after <= before * 1.25 + 40, report
    before, after = grown("lpm_entries")
    assert after <= before * 1.25 + 200, report
    before, after = grown("rss_kib")
    assert after <= before + 20 * 1024, report
