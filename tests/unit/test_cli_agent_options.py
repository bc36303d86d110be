"""`fleetprof agent`: what it refuses before any BPF work (one line, status 2, no spool created), and its
window logic on a fake core: one batch per interval with its own start and duration, stats per interval,
the aggregator started afresh with a refreshed clock offset, empty windows not sent, symbols offered."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from fake_collector import FakeCollector
from test_output_profiles import rich_profile

from fleetprof.agent.fleet import FleetAgent, FleetOptions
from fleetprof.bpf.caps import MissingCapability
from fleetprof.cli.main import main
from fleetprof.reporter.backoff import Backoff
from fleetprof.reporter.reporter import Reporter
from fleetprof.reporter.senders import sender_for
from fleetprof.reporter.spool import Spool
from fleetprof.tracer.aggregate import Aggregator, StackCounts, StackKey

USAGE = [
    (
        ["--collector", "ftp://x"],
        "fleetprof: --collector 'ftp://x': the scheme must be http, https, grpc or grpcs",
    ),
    (["--collector", "localhost:4318"], "give a URL like http://HOST:PORT"),
    (["--collector", "http://c", "-F", "0"], "fleetprof: --frequency must be between 1 and 10000 Hz"),
    (["--collector", "http://c", "-i", "0"], "fleetprof: --interval must be between 0.1 and 3600 seconds"),
    (["--collector", "http://c", "-i", "nan"], "fleetprof: --interval must be between 0.1 and 3600 seconds"),
    (["--collector", "http://c", "--spool-size", "0"], "fleetprof: --spool-size must be a positive number"),
    (["--collector", "http://c", "--symbols", "maybe"], "argument --symbols: invalid choice: 'maybe'"),
    (["--collector", "grpc://c:1", "--symbol-url", "grpc://c:2"], "--symbol-url 'grpc://c:2': give an http"),
    ([], "the following arguments are required: --collector"),
]


def run(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as exc:  # argparse's own errors
        return int(exc.code or 0)


@pytest.mark.parametrize(("args", "message"), USAGE)
def test_refused_before_any_work(args, message, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = tmp_path / "spool"
    assert run(["agent", *args, "--spool-dir", str(spool)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not spool.exists()


def test_missing_capability_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = MissingCapability("privileges", "needs root (or CAP_BPF and CAP_PERFMON) to load BPF programs")
    monkeypatch.setattr("fleetprof.cli.agent.missing_capabilities", lambda: [missing])
    spool = tmp_path / "spool"
    assert main(["agent", "--collector", "http://127.0.0.1:9", "--spool-dir", str(spool)]) == 2
    assert capsys.readouterr().err == f"fleetprof: {missing.message}\n"
    assert not spool.exists()


@dataclass
class FakeTracker:
    def open_path(self, file_id: str) -> str:
        return f"/proc/self/fd/{int(file_id[:2], 16)}"


@dataclass
class FakeCore:
    aggregator: Aggregator = field(default_factory=Aggregator)
    files: dict = field(default_factory=dict)
    tracker: FakeTracker = field(default_factory=FakeTracker)
    counter: int = 0
    released: int = 0
    swept: int = 0

    def stats(self) -> dict[str, int]:
        self.counter += 7
        return {"samples": self.counter, "lpm_entries": 40}

    def upkeep_stats(self) -> dict[str, int]:
        return {"tracked_pids": 3}

    def sweep(self) -> int:
        self.swept += 1
        return 0

    def release_exited(self) -> None:
        self.released += 1


class FakeUploader:
    def __init__(self) -> None:
        self.offers: list[tuple[str, tuple[str, ...]]] = []

    def offer(self, file_id: str, paths, display_path: str = "") -> None:
        self.offers.append((file_id, tuple(paths)))


def add_stack(core: FakeCore, pid: int) -> None:
    key = StackKey(pid, pid, b"t", b"p", 0, 0, 0, b"")
    core.aggregator.stacks[key] = StackCounts(count=1, cpus={0})
    core.aggregator.samples += 1
    core.aggregator.pids.add(pid)


def test_one_batch_per_window_with_its_own_times_and_stats(tmp_path: Path) -> None:
    collector = FakeCollector().start()
    reporter = Reporter(Spool(tmp_path), sender_for(collector.url, "t"), Backoff(0.01, 0.05))
    uploader = FakeUploader()
    core = FakeCore()
    agent = FleetAgent(FleetOptions(interval_s=0.1, sweep_s=0.0), reporter, uploader, core=core)  # type: ignore[arg-type]
    built: list[dict] = []
    agent._build = lambda stacks: built.append(dict(stacks)) or rich_profile()
    agent._window_start_ns = time.time_ns()
    reporter.start()
    try:
        add_stack(core, 1)
        core.aggregator.realtime_offset_ns = 0
        first = agent.emit_window()
        agent.upkeep()
        time.sleep(0.02)
        assert agent.emit_window() is None  # nothing sampled: nothing sent
        add_stack(core, 2)
        second = agent.emit_window()
        assert collector.state.wait_for(lambda: len(collector.state.accepted()) == 2)
        assert reporter.close()
    finally:
        collector.stop()
    assert first is not None and second is not None
    assert [next(iter(s)).pid for s in built] == [1, 2]  # each window only its own stacks
    assert core.aggregator.stacks == {} and core.aggregator.samples == 0 and core.aggregator.pids == set()
    assert core.aggregator.realtime_offset_ns != 0  # refreshed
    assert first.start_time_ns + first.duration_ns <= second.start_time_ns  # windows don't overlap
    assert second.duration_ns > 0
    # The counter grows by 7 per interval: each batch says 7, not the running total (21 by the third).
    assert first.stats["samples"] == 7 and second.stats["samples"] == 7
    assert second.stats["lpm_entries"] == 40 and second.stats["tracked_pids"] == 3  # sizes as they are
    assert core.released == 1 and core.swept == 1
    times = [
        r.request.resource_profiles[0].scope_profiles[0].profiles[0].time_unix_nano
        for r in collector.state.accepted()
    ]
    assert times == [first.start_time_ns, second.start_time_ns]
    ids = [r.headers["X-Fleetprof-Batch"] for r in collector.state.accepted()]
    assert len(set(ids)) == 2
    offered = {fid for fid, _ in uploader.offers}
    assert offered == {m.file_id for m in rich_profile().mappings() if m.file_id}
    assert all(paths[1].startswith("/proc/self/fd/") for _, paths in uploader.offers)
