"""`fleetprof record`'s options through the real CLI: the summary line (pinned: benches parse it),
`--verbose`, `-o -` and binary output refused on a terminal, the default output name, a command the kernel
can't run, several `--pid`, SIGINT and SIGTERM, `--version`. Option checks that come before any BPF work
are in tests/unit/test_cli_usage.py."""

from __future__ import annotations

import importlib.metadata
import os
import pty
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from zoo.build import (
    FP_FLAGS,
    Chain,
    ZooError,
    build_c,
    clock_path,
    exit_path,
    fleetprof_command,
    fn,
    judge,
    load_pprof,
    main_root,
    parse_folded,
    pprof_stacks,
    record_env,
)

from fleetprof import __version__

EXE = "zoo_fp"
# The line a run prints once its profile is written (notes and --verbose counters may follow). Benches
# parse it (bench/_common.py): change it only together with them.
SUMMARY = re.compile(
    r"^fleetprof: wrote (?P<path>.+) \((?P<format>[a-z]+)\): samples (?P<samples>\d{1,3}(?:,\d{3})*), "
    r"processes (?P<processes>\d+), (?P<seconds>\d+\.\d) s, whole stacks (?P<whole>\d{1,3}\.\d)%$"
)
# A counter: its name (words, some with a `kind: reason` part) and a non-zero value with separators.
COUNTER = re.compile(
    r"^fleetprof: (?P<name>[a-z][a-z0-9_]*(?:: [\w ]+)?): (?P<value>[1-9]\d{0,2}(?:,\d{3})*)$"
)
READY_TIMEOUT_S = 30.0
MIN_SHARE = 0.99
# Samples a judged run must have: a busy second at 999 Hz gives ~999 on a quiet machine, a fraction of
# that on a loaded one (zoo programs run for wall-clock time); fewer than this and a share means little.
MIN_SELECTED = 100


def fp_chains() -> list[Chain]:
    """fp_chain.c's paths: the call chain to `hot`, the clock bookkeeping, exit."""
    root = main_root(EXE)
    return [
        (*root, fn("outer", EXE), fn("middle", EXE), fn("inner", EXE), fn("hot", EXE)),
        clock_path(root, EXE),
        exit_path(EXE),
    ]


@dataclass(slots=True)
class Run:
    """A finished `fleetprof …` run."""

    returncode: int
    stdout: bytes
    stderr: str


def fleetprof(*args: str, cache: Path, cwd: Path | None = None, timeout: float = 120) -> Run:
    """Run the CLI to its end."""
    proc = subprocess.run(
        [*fleetprof_command(), *args], capture_output=True, cwd=cwd, env=record_env(cache), timeout=timeout
    )
    return Run(proc.returncode, proc.stdout, proc.stderr.decode())


def one_line(run: Run) -> str:
    """The only line of stderr (no traceback)."""
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in run.stderr
    assert len(lines) == 1, run.stderr
    return lines[0]


def summary(stderr: str) -> re.Match[str]:
    """The summary line, matched whole; it is stderr's first line."""
    first = stderr.splitlines()[0] if stderr else ""
    match = SUMMARY.fullmatch(first)
    assert match, f"summary line: {first!r}"
    return match


def number(text: str) -> int:
    """An integer printed with thousands separators."""
    return int(text.replace(",", ""))


def wait_for(path: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until `path` exists (the command under record says it runs), failing if record ends first."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's unwind-table cache."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def exe(build_dir: Path) -> Path:
    """zoo/fp_chain.c with frame pointers: main -> outer -> middle -> inner -> hot for argv[1] seconds."""
    try:
        return build_c(EXE, ["fp_chain.c"], build_dir, FP_FLAGS)
    except ZooError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def stdout_run(exe: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`record -v -o - -f folded` of zoo_fp for 1 s, run in an empty directory (it must stay empty); shared
    by the summary, --verbose and stdout tests."""
    cwd = tmp_path_factory.mktemp("stdout")
    args = ["record", "-v", "-F", "999", "-o", "-", "-f", "folded", "--", str(exe), "1"]
    run = fleetprof(*args, cache=cache, cwd=cwd)
    assert run.returncode == 0, run.stderr
    assert list(cwd.iterdir()) == [], "nothing written but stdout"
    return run


def test_summary_line_format(stdout_run: Run) -> None:
    """`fleetprof: wrote PATH (FORMAT): samples N, processes N, S.S s, whole stacks P.P%`, the first line on
    stderr, with the numbers true to the profile written."""
    match = summary(stdout_run.stderr)
    stacks = parse_folded(stdout_run.stdout.decode())
    assert match["path"] == "-"
    assert match["format"] == "folded"
    assert number(match["samples"]) == sum(s.count for s in stacks)
    assert number(match["processes"]) == 1, "the command's one process (exec keeps the forked pid)"
    assert float(match["seconds"]) >= 1.0, "zoo_fp 1 runs for a second, the recording as long"
    assert 0.0 <= float(match["whole"]) <= 100.0


def test_verbose_prints_counters(stdout_run: Run) -> None:
    """After the summary, one `fleetprof: NAME: N` line per non-zero counter, sorted by name, and the
    submitted samples are the summary's (none lost between the kernel and the file)."""
    counters = {}
    for line in stdout_run.stderr.splitlines()[1:]:
        match = COUNTER.fullmatch(line)
        assert match, f"not a counter line: {line!r}"
        counters[match["name"]] = number(match["value"])
    assert list(counters) == sorted(counters)
    assert {"samples", "samples_submitted", "native_frames", "unwind_tables"} <= set(counters), counters
    assert counters["samples_submitted"] == number(summary(stdout_run.stderr)["samples"])


def test_output_to_stdout(stdout_run: Run) -> None:
    """`-o -` writes the profile to stdout: the program's whole chains."""
    stacks = parse_folded(stdout_run.stdout.decode())
    got = judge(stacks, fp_chains(), process=EXE)
    assert got.selected >= MIN_SELECTED and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


def run_on_terminal(args: list[str], cache: Path) -> tuple[int, str]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; its exit status and what it printed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else (and never return into pytest)
        try:
            os.execve(fleetprof_command()[0], [*fleetprof_command(), *args], record_env(cache))
        finally:
            os._exit(127)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


@pytest.mark.parametrize("fmt", ["pprof", "otlp"])
def test_binary_output_to_a_terminal_is_refused(fmt: str, cache: Path, tmp_path: Path) -> None:
    """`-o -` with a binary format and stdout on a terminal: one line, usage status, the command never ran."""
    marker = tmp_path / "ran"
    status, text = run_on_terminal(["record", "-o", "-", "-f", fmt, "--", "touch", str(marker)], cache)
    assert status == 2
    assert text.strip() == f"fleetprof: refusing to write {fmt} (binary) output to a terminal"
    assert not marker.exists()


@pytest.mark.parametrize(("options", "suffix"), [((), ".html"), (("-f", "folded"), ".folded")])
def test_default_output_name(options: tuple[str, ...], suffix: str, cache: Path, tmp_path: Path) -> None:
    """Without -o: `fleetprof-YYYYmmdd-HHMMSS` plus the format's suffix, in the current directory."""
    run = fleetprof("record", *options, "--", "true", cache=cache, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (written,) = tmp_path.iterdir()
    assert re.fullmatch(rf"fleetprof-\d{{8}}-\d{{6}}{re.escape(suffix)}", written.name), written.name
    assert run.stderr.splitlines() == [summary(run.stderr)[0]], "without --verbose, the summary alone"
    assert summary(run.stderr)["path"] == written.name
    if suffix == ".html":
        assert written.read_text().startswith("<!DOCTYPE html>")
    else:
        parse_folded(written.read_text())


def test_command_of_unknown_format(cache: Path, tmp_path: Path) -> None:
    """An executable file the kernel can't run (exec fails once sampling is set up): 126 and the system's
    reason in one line. (Files that are not executable at all, and missing ones, are refused before any
    BPF work: tests/unit/test_cli_usage.py.)"""
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF not really")
    garbage.chmod(0o755)
    out = tmp_path / "p.folded"
    run = fleetprof("record", "-o", str(out), "--", str(garbage), cache=cache)
    assert run.returncode == 126, run.stderr
    assert one_line(run) == f"fleetprof: {garbage}: Exec format error"
    assert not out.exists()


def test_several_pids(exe: Path, cache: Path, tmp_path: Path) -> None:
    """`--pid A B`: both processes, and only they, with their whole chains; the summary counts two."""
    workers = [subprocess.Popen([str(exe), "5"]) for _ in range(2)]
    try:
        out = tmp_path / "p.pb.gz"
        pids = [str(w.pid) for w in workers]
        run = fleetprof(
            "record", "-F", "999", "-o", str(out), "--duration", "1.5", "--pid", *pids, cache=cache
        )
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    assert run.returncode == 0, run.stderr
    assert number(summary(run.stderr)["processes"]) == 2
    stacks = pprof_stacks(load_pprof(out))
    assert {s.pid for s in stacks} == {w.pid for w in workers}
    for worker in workers:
        got = judge([s for s in stacks if s.pid == worker.pid], fp_chains(), process=EXE)
        assert got.selected >= MIN_SELECTED and got.share >= MIN_SHARE, f"{got.summary()}\n{got.worst()}"


TRAPPING = """trap 'echo INT > {got}; exit 42' INT
trap 'echo TERM > {got}; exit 43' TERM
: > {ready}
while :; do :; done
"""


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 42), (signal.SIGTERM, 43)], ids=["INT", "TERM"])
def test_signal_stops_record_and_is_forwarded(sig: int, status: int, cache: Path, tmp_path: Path) -> None:
    """SIGINT or SIGTERM to `record -- CMD` while the command runs: the command gets the same signal, its
    exit status is record's, and the profile holds its samples."""
    ready, got = tmp_path / "ready", tmp_path / "got"
    out = tmp_path / "p.folded"
    script = TRAPPING.format(got=got, ready=ready)
    args = [*fleetprof_command(), "record", "-F", "999", "-o", str(out), "--", "sh", "-c", script]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, env=record_env(cache))
    try:
        wait_for(ready, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = err.decode()
    assert proc.returncode == status, stderr
    assert got.read_text() == f"{signal.Signals(sig).name[3:]}\n"
    assert number(summary(stderr)["samples"]) == sum(s.count for s in parse_folded(out.read_text()))
    assert "sh" in {s.process for s in parse_folded(out.read_text())}


def test_version(cache: Path) -> None:
    """`--version`: the package's version on stdout, status 0."""
    run = fleetprof("--version", cache=cache)
    assert run.returncode == 0
    assert run.stdout.decode() == f"fleetprof {__version__}\n"
    assert __version__ == importlib.metadata.version("fleetprof")
