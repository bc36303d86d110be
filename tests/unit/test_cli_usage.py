"""What `record` and `top` refuse before any BPF work (no root needed): bad values, bounds, target
combinations, commands that can't run and pids that don't exist; each is exactly one line and its status,
with nothing run and nothing written."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fleetprof.cli.main import main

RUNS = ["--", "touch", "{marker}"]  # a target that leaves a mark if it ever runs
DURATION = "fleetprof: --duration must be a positive number of seconds"
FREQUENCY = "fleetprof: --frequency must be between 1 and 10000 Hz"
RECORD_USAGE = [
    (["-F", "0", *RUNS], FREQUENCY),
    (["-F", "-5", *RUNS], FREQUENCY),
    (["-F", "10001", *RUNS], FREQUENCY),
    (["-F", "fast", *RUNS], "fleetprof record: error: argument --frequency/-F: invalid int value: 'fast'"),
    (["-d", "0", *RUNS], DURATION),
    (["-d", "-1", *RUNS], DURATION),
    (["-d", "nan", *RUNS], DURATION),
    (["-d", "inf", *RUNS], DURATION),
    (["-d", "soon", *RUNS], "fleetprof record: error: argument --duration/-d: invalid float value: 'soon'"),
    # the frequency bounds themselves pass: it is the duration that is refused
    (["-F", "10000", "-d", "0", *RUNS], DURATION),
    (["-F", "1", "-d", "0", *RUNS], DURATION),
    (["--pid", "1", *RUNS], "fleetprof: give either -- CMD, --pid or --all, not several"),
    (["--all", *RUNS], "fleetprof: give either -- CMD, --pid or --all, not several"),
    (
        ["--all", "--pid", "1"],
        "fleetprof record: error: argument --pid/-p: not allowed with argument --all/-a",
    ),
    (
        ["--format", "nope", *RUNS],
        "fleetprof: unknown output format 'nope' (known: folded, html, otlp, pprof, speedscope)",
    ),
    ([], "fleetprof: say what to profile: -- CMD ARGS, --pid PID, or --all"),
]
TOP_USAGE = [
    (["--interval", "0"], "fleetprof: --interval must be a positive number of seconds"),
    (["--interval", "nan"], "fleetprof: --interval must be a positive number of seconds"),
    (["--interval", "inf"], "fleetprof: --interval must be a positive number of seconds"),
    (["--limit", "0"], "fleetprof: --limit must be positive"),
    (["-F", "0"], FREQUENCY),
    (["-F", "10001"], FREQUENCY),
    (["--iterations", "0"], "fleetprof: --iterations must be positive"),
    (["--limit", "many"], "fleetprof top: error: argument --limit/-n: invalid int value: 'many'"),
]


@pytest.fixture(autouse=True)
def _keep_sigterm() -> Iterator[None]:
    """main() installs a SIGTERM handler for the process it runs in: give pytest its own back."""
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in this process: exit status, stdout, stderr."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own errors and --version
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


def free_pid() -> int:
    """A pid no process has right now (a reaped child's)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert not Path(f"/proc/{proc.pid}").exists()
    return proc.pid


@pytest.mark.parametrize(("options", "message"), RECORD_USAGE, ids=[" ".join(o[:4]) for o, _ in RECORD_USAGE])
def test_record_usage_errors(
    options: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exactly the one line, status 2."""
    marker = tmp_path / "ran"
    out = tmp_path / "p.folded"
    args = ["record", "-o", str(out), *[a.format(marker=marker) for a in options]]
    assert cli(args, capsys) == (2, "", message + "\n")
    assert not marker.exists()
    assert not out.exists()


@pytest.mark.parametrize(("options", "message"), TOP_USAGE, ids=[" ".join(o) for o, _ in TOP_USAGE])
def test_top_usage_errors(options: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Exactly the one line, status 2, no table."""
    once = [] if "--iterations" in options else ["--iterations", "1"]  # should it start after all, end soon
    assert cli(["top", *options, *once], capsys) == (2, "", message + "\n")


@pytest.mark.parametrize("command", ["record", "top"])
def test_pid_that_does_not_exist(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--pid` of no process: status 1, the line names it."""
    pid = free_pid()
    extra = ["-o", str(tmp_path / "p.folded"), "-d", "1"] if command == "record" else ["--iterations", "1"]
    assert cli([command, *extra, "--pid", str(pid)], capsys) == (
        1,
        "",
        f"fleetprof: no process with pid {pid}\n",
    )


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("not executable", 126, "Permission denied"),
        ("directory", 126, "Permission denied"),
        ("missing", 127, "No such file or directory"),
    ],
)
def test_command_that_cannot_run(
    case: str, status: int, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """126 for a file that can't be executed, 127 for one that does not exist, as a shell says."""
    paths = {
        "not executable": tmp_path / "plain",
        "directory": tmp_path / "dir",
        "missing": tmp_path / "nope",
    }
    paths["not executable"].write_text("echo hi\n")
    paths["directory"].mkdir()
    path = paths[case]
    out = tmp_path / "p.folded"
    assert cli(["record", "-o", str(out), "--", str(path)], capsys) == (
        status,
        "",
        f"fleetprof: {path}: {reason}\n",
    )
    assert not out.exists()


def test_command_not_on_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bare name PATH doesn't have: 127, as a shell says it."""
    out = tmp_path / "p.folded"
    args = ["record", "-o", str(out), "--", "zoo-no-such-command"]
    assert cli(args, capsys) == (127, "", "fleetprof: zoo-no-such-command: command not found\n")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version` on stdout, status 0 (the console script's is checked in the BPF tier)."""
    from fleetprof import __version__

    assert cli(["--version"], capsys) == (0, f"fleetprof {__version__}\n", "")
