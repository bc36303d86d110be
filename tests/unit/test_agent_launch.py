"""A command started for `record` stops before its own code runs, with its libraries already mapped, and
then is released (no longer traced) and runs on unchanged: output, exit status and all."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pytest

from fleetprof.agent.launch import launch_stopped
from tests.conftest import compile_c

# Blocks on the FIFO argv[1] until the test writes to it, then exits 7 when nothing traces it (8 otherwise).
SRC = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int main(int argc, char **argv) {
    char line[256];
    int tracer = -1;
    FILE *fifo = fopen(argv[1], "r");
    if (!fifo || !fgets(line, sizeof line, fifo)) return 2;
    FILE *status = fopen("/proc/self/status", "r");
    while (status && fgets(line, sizeof line, status))
        if (strncmp(line, "TracerPid:", 10) == 0) tracer = (int)strtol(line + 10, NULL, 10);
    printf("argc=%d tracer=%d\n", argc, tracer);
    return tracer == 0 ? 7 : 8;
}
"""


def status_field(pid: int, name: str) -> str:
    """A field of /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return value.strip()
    raise AssertionError(f"{name} not in /proc/{pid}/status")


@pytest.fixture(scope="module")
def launchee(build_dir: Path) -> Path:
    """SRC, compiled once for the module."""
    return compile_c(SRC, build_dir / "launchee", "-O1")


def test_stops_at_entry_then_is_released(launchee: Path, tmp_path: Path) -> None:
    """While the callback runs the child is stopped and traced by us with libc mapped; afterwards nothing
    traces it, it runs to the end, and its output and status are its own."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    seen: dict[str, str] = {}

    def at_start(pid: int) -> None:
        seen["maps"] = Path(f"/proc/{pid}/maps").read_text()
        seen["state"] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        seen["tracer"] = status_field(pid, "TracerPid")

    with open(out, "wb") as stdout:
        child = _launch([str(launchee), str(fifo), "x"], str(launchee), at_start, stdout)
    try:
        assert seen["state"] == "t", "stopped (traced) while the callback runs"
        assert seen["tracer"] == str(os.getpid())
        assert "libc.so" in seen["maps"], "the loader had mapped the DT_NEEDED libraries"
        assert child.returncode is None, "still running, waiting for the FIFO"
        assert status_field(child.pid, "TracerPid") == "0", "detached"
        assert status_field(child.pid, "State")[0] in "SR", "running or sleeping, not stopped"
        fifo.write_text("go\n")
        assert child.wait(timeout=10) == 7, "the child itself saw no tracer"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert out.read_text() == "argc=3 tracer=0\n"


def _launch(
    argv: list[str], exe: str, at_start: Callable[[int], None], stdout: BinaryIO
) -> subprocess.Popen[bytes]:
    """launch_stopped with the child's stdout sent to `stdout` (it inherits our descriptors)."""
    saved = os.dup(1)
    try:
        os.dup2(stdout.fileno(), 1)
        return launch_stopped(argv, exe, at_start)
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def test_output_and_status_pass_through(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with open(out, "wb") as stdout:
        child = _launch(["sh", "-c", "echo hi; exit 3"], "/bin/sh", lambda pid: None, stdout)
    assert child.wait(timeout=10) == 3
    assert out.read_text() == "hi\n"


def test_a_failing_callback_still_releases_the_child(tmp_path: Path) -> None:
    """The callback's error propagates, and the child is detached all the same and runs to its end."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    pids: list[int] = []

    def boom(pid: int) -> None:
        pids.append(pid)
        raise RuntimeError("scan failed")

    with pytest.raises(RuntimeError, match="scan failed"):
        launch_stopped(["sh", "-c", f"read x < {fifo}; exit 5"], "/bin/sh", boom)
    (pid,) = pids
    try:
        assert status_field(pid, "TracerPid") == "0"
        fifo.write_text("go\n")
        _, status = os.waitpid(pid, 0)
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)
    assert os.waitstatus_to_exitcode(status) == 5
