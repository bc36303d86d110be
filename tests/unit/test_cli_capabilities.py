"""Without the privileges to load BPF, `record` and `top` say which capability is missing in one line and
exit with status 2, before touching the output file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FLEETPROF = [sys.executable, "-m", "fleetprof"]


def _unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv (util-linux) is needed to drop root in this test")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", *argv]  # fmt: skip


@pytest.mark.parametrize("args", [["record", "-o", "{out}", "--", "true"], ["top", "--iterations", "1"]])
def test_missing_privileges_is_one_line_and_status_2(tmp_path: Path, args: list[str]) -> None:
    tmp_path.chmod(0o777)
    out = tmp_path / "p.folded"
    argv = _unprivileged([*FLEETPROF, *(a.format(out=out) for a in args)])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_BPF" in lines[0] and lines[0].startswith("fleetprof: "), proc.stderr
    assert not out.exists()
