"""Bad input through the real CLI: one clear line, the right exit status, never a traceback; Ctrl-C during
`--all` still writes a complete profile; the command's exit status is passed through."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from zoo.build import (
    FP_FLAGS,
    ZooError,
    build_c,
    load_pprof,
    parse_folded,
    pprof_stacks,
    record,
    record_args,
    record_env,
)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache private to this module's runs."""
    return tmp_path_factory.mktemp("cache")


def _one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def _free_pid() -> int:
    """A pid no process has right now (a reaped child's)."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    pid = proc.pid
    assert not Path(f"/proc/{pid}").exists()
    return pid


def test_missing_command(tmp_path: Path, cache_dir: Path) -> None:
    """An unknown command: exit 127 and the shell's one-line message."""
    out = tmp_path / "p.folded"
    run = record(["--", "zoo-no-such-command"], out, cache_dir=cache_dir)
    assert run.returncode == 127
    assert "zoo-no-such-command: command not found" in _one_line(run.stderr)
    missing = record(["--", str(tmp_path / "nope")], out, cache_dir=cache_dir)
    assert missing.returncode == 127
    assert "No such file or directory" in _one_line(missing.stderr)


def test_unwritable_output_fails_before_sampling(tmp_path: Path, cache_dir: Path) -> None:
    """An output path that can't be written: one line, status 1, and the command never runs."""
    marker = tmp_path / "ran"
    for out in (tmp_path / "no-such-dir" / "p.folded", tmp_path, Path("/proc/zoo.folded")):
        run = record(["--", "touch", str(marker)], out, cache_dir=cache_dir)
        assert run.returncode == 1
        assert str(out) in _one_line(run.stderr)
        assert not marker.exists(), f"the command ran although {out} can't be written"


def test_unknown_format(tmp_path: Path, cache_dir: Path) -> None:
    """`--format nope`: one line naming it, usage status."""
    run = record(["--", "true"], tmp_path / "p.out", fmt="nope", cache_dir=cache_dir)
    assert run.returncode == 2
    assert "nope" in _one_line(run.stderr)
    assert not (tmp_path / "p.out").exists()


def test_pid_that_does_not_exist(tmp_path: Path, cache_dir: Path) -> None:
    """`--pid` of no process: one line naming the pid, status 1."""
    pid = _free_pid()
    run = record(["--pid", str(pid), "--duration", "1"], tmp_path / "p.folded", cache_dir=cache_dir)
    assert run.returncode == 1
    assert _one_line(run.stderr) == f"fleetprof: no process with pid {pid}"


def test_command_that_exits_at_once(tmp_path: Path, cache_dir: Path) -> None:
    """`-- true`: status 0, a summary line, and a well-formed (maybe empty) profile."""
    out = tmp_path / "p.folded"
    run = record(["--", "true"], out, cache_dir=cache_dir)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    assert "samples" in run.stderr
    parse_folded(out.read_text())
    pb = tmp_path / "p.pb.gz"
    assert record(["--", "true"], pb, cache_dir=cache_dir).returncode == 0
    pprof_stacks(load_pprof(pb))


@pytest.mark.parametrize(("script", "status"), [("exit 3", 3), ("exit 0", 0), ("kill -TERM $$", 128 + 15)])
def test_exit_status_is_passed_through(tmp_path: Path, cache_dir: Path, script: str, status: int) -> None:
    """The command's exit status (128 + signal when killed) is fleetprof's."""
    run = record(["--", "sh", "-c", script], tmp_path / "p.folded", cache_dir=cache_dir)
    assert run.returncode == status, run.stderr
    assert "Traceback" not in run.stderr


def _wait_sampling(proc: subprocess.Popen[str]) -> None:
    """Until `proc` has its perf events open (it samples, and Ctrl-C means "stop and write")."""
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "never started sampling"
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{proc.pid}/fd")
            if any(os.readlink(fd) == "anon_inode:[perf_event]" for fd in fds.iterdir()):
                return
        time.sleep(0.05)


def test_sigint_during_all_writes_the_profile(build_dir: Path, tmp_path: Path, cache_dir: Path) -> None:
    """SIGINT to `record --all --duration 30` while it samples stops it early, status 0, with a complete,
    parseable profile that holds the processes it saw (a busy zoo program among them)."""
    try:
        busy = build_c("zoo_fp", ["fp_chain.c"], build_dir, FP_FLAGS)
    except ZooError as exc:
        pytest.fail(str(exc))
    out = tmp_path / "all.pb.gz"
    worker = subprocess.Popen([str(busy), "6"])
    args = [*record_args(out, 999), "--all", "--duration", "30"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, env=record_env(cache_dir))
    try:
        _wait_sampling(proc)
        time.sleep(1)  # a second of samples: the busy worker alone gives ~999 of them
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"still recording 20 s after SIGINT; stderr:\n{proc.communicate()[1]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        worker.kill()
        worker.wait()
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    stacks = pprof_stacks(load_pprof(out))
    assert sum(s.count for s in stacks) > 100
    assert "zoo_fp" in {s.process for s in stacks}
    assert len({s.pid for s in stacks}) >= 2, "the whole host, not one process"
