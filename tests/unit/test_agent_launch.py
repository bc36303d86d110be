"""A command started for `record` stops before its own code runs, with its libraries already mapped, and
then runs on unchanged: output, exit status and all."""

from __future__ import annotations

from pathlib import Path

from fleetprof.agent.launch import launch_stopped
from tests.conftest import compile_c

SRC = r"""
#include <stdio.h>
int main(int argc, char **argv) { printf("%d\n", argc); return 7; }
"""


def test_stops_at_entry_with_libraries_mapped(build_dir: Path) -> None:
    exe = compile_c(SRC, build_dir / "launchee", "-O1")
    seen: dict[str, str] = {}

    def at_start(pid: int) -> None:
        seen["maps"] = Path(f"/proc/{pid}/maps").read_text()
        seen["state"] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]

    child = launch_stopped([str(exe), "x"], str(exe), at_start)
    child.wait(timeout=10)
    assert seen["state"] == "t", "stopped (traced) while the callback runs"
    assert "libc.so" in seen["maps"], "the loader had mapped the DT_NEEDED libraries"
    assert child.returncode == 7


def test_output_and_status_pass_through() -> None:
    child = launch_stopped(["sh", "-c", "echo hi; exit 3"], "/bin/sh", lambda pid: None)
    child.wait(timeout=10)
    assert child.returncode == 3


def test_a_failing_callback_still_releases_the_child() -> None:
    def boom(pid: int) -> None:
        raise RuntimeError("scan failed")

    try:
        launch_stopped(["sh", "-c", "exit 5"], "/bin/sh", boom)
    except RuntimeError:
        pass
    else:
        raise AssertionError("the callback's error propagates")
