"""`fleetprof top` live, through the real CLI: the whole host shows a busy program's hot function; `--pid`
shows that process only; `--limit`, `--interval` and `--iterations` shape the tables. (The row arithmetic
is in tests/unit/test_top_rows.py, bad options in tests/unit/test_cli_usage.py.)"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from zoo.build import FP_FLAGS, ZooError, build_c, fleetprof_command, record_env

HEADER = re.compile(
    r"fleetprof top — \d\d:\d\d:\d\d, (?P<total>\d+) samples in (?P<seconds>\d+\.\d) s at (?P<hz>\d+) Hz"
)
COLUMNS = f"{'SELF%':>6} {'TOTAL%':>6} {'SAMPLES':>8}  FUNCTION"
ROW = re.compile(r"(?P<self>[ \d]{3}\d\.\d) (?P<total>[ \d]{3}\d\.\d) (?P<samples>[ \d]{7}\d)  (?P<name>.+)")
BUSY_SECONDS = "60"  # longer than the module needs; killed at its end


@dataclass(slots=True)
class Row:
    """One line of the table."""

    self_pct: float
    total_pct: float
    samples: int
    name: str


@dataclass(slots=True)
class Table:
    """One refresh: its header numbers and rows."""

    total: int
    seconds: float  # the window the table covers
    hz: int
    rows: list[Row]


def parse_tables(text: str) -> list[Table]:
    """Every table `top` printed to a pipe (no screen clearing): header, column titles, rows, blank line."""
    assert text.endswith("\n\n"), text
    tables = []
    for block in text[:-2].split("\n\n"):
        header, columns, *lines = block.split("\n")
        match = HEADER.fullmatch(header)
        assert match, header
        assert columns == COLUMNS
        rows = []
        for line in lines:
            row = ROW.fullmatch(line)
            assert row, line
            rows.append(Row(float(row["self"]), float(row["total"]), int(row["samples"]), row["name"]))
        tables.append(Table(int(match["total"]), float(match["seconds"]), int(match["hz"]), rows))
    return tables


def top(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """`fleetprof top ARGS` to its end, stdout a pipe."""
    return subprocess.run(
        [*fleetprof_command(), "top", *args],
        capture_output=True,
        text=True,
        env=record_env(cache),
        timeout=120,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's unwind-table cache."""
    return tmp_path_factory.mktemp("cache")


@dataclass(slots=True)
class LiveRuns:
    """The tables of the two live runs."""

    host: list[Table]
    pid: list[Table]


@pytest.fixture(scope="module")
def live(build_dir: Path, cache: Path) -> LiveRuns:
    """While two busy programs with the same functions under different names run: two 1 s refreshes of the
    whole host (up to 50 rows), then two 0.5 s refreshes of zoo_fp alone (3 rows each)."""
    try:
        exe = build_c("zoo_fp", ["fp_chain.c"], build_dir, FP_FLAGS)
        decoy = build_c("zoo_decoy", ["fp_chain.c"], build_dir, FP_FLAGS)
    except ZooError as exc:
        pytest.fail(str(exc))
    procs = [subprocess.Popen([str(p), BUSY_SECONDS]) for p in (exe, decoy)]
    try:
        host = top("--interval", "1", "--iterations", "2", "--limit", "50", cache=cache)
        args = ["--pid", str(procs[0].pid), "--interval", "0.5", "--iterations", "2", "--limit", "3"]
        pid = top(*args, cache=cache)
        gone = [p.args[0] for p in procs if p.poll() is not None]
        assert not gone, f"busy programs exited early: {gone}\n{host.stdout}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for run in (host, pid):
        assert run.returncode == 0 and run.stderr == "", run.stderr
    return LiveRuns(parse_tables(host.stdout), parse_tables(pid.stdout))


def test_whole_host_shows_the_busy_functions(live: LiveRuns) -> None:
    """Both busy programs' hot function is in the second table (the first window may begin before the unwind
    tables of every program on the host are ready); rows are ordered by self share, the numbers add up."""
    assert len(live.host) == 2
    table = live.host[-1]
    assert table.hz == 99
    assert table.seconds >= 1.0, "a window lasts the interval, plus the time the previous table took"
    names = [r.name for r in table.rows]
    assert {"hot [zoo_fp]", "hot [zoo_decoy]"} <= set(names), names
    assert 1 <= len(table.rows) <= 50
    _check_arithmetic(table)


def test_pid_limit_interval_iterations(live: LiveRuns) -> None:
    """`--pid`: zoo_fp's functions only, its hot function first with most samples; `--limit 3`: three
    rows; `--interval 0.5`: windows of at least that; `--iterations 2`: two tables."""
    assert len(live.pid) == 2
    for table in live.pid:
        assert table.hz == 99
        assert table.seconds >= 0.5, "a window lasts the interval, plus the time the previous table took"
        assert len(table.rows) == 3
        first = table.rows[0]
        assert first.name == "hot [zoo_fp]"
        # fp_chain runs in hot (one clock read per 200k iterations): ~98 % on a quiet machine, less where
        # preemption puts kernel leaves on a loaded one
        assert first.self_pct >= 50.0, first
        assert not [r.name for r in table.rows if "zoo_decoy" in r.name], "only the given pid"
        _check_arithmetic(table)


def _check_arithmetic(table: Table) -> None:
    """Percentages follow from the samples column and the header's total; order is by self share."""
    assert table.total > 0
    for row in table.rows:
        assert row.self_pct == pytest.approx(100 * row.samples / table.total, abs=0.05)
        assert row.self_pct <= row.total_pct <= 100.0
    selfs = [r.samples for r in table.rows]
    assert selfs == sorted(selfs, reverse=True)
    assert sum(selfs) <= table.total
