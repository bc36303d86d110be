"""Shared test fixtures: compiling C test subjects into a per-session directory."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for binaries compiled by the tests."""
    return tmp_path_factory.mktemp("build")


def compile_c(src: str, out: Path, *flags: str, cc: str = "gcc") -> Path:
    """Compile C (or C++ with cc='g++') source text to `out`; fails the test with the compiler's output."""
    suffix = ".cc" if cc == "g++" else ".c"
    src_path = out.with_suffix(suffix)
    src_path.write_text(src)
    if shutil.which(cc) is None:
        pytest.fail(f"{cc} is not installed (make setup installs it)")
    proc = subprocess.run([cc, *flags, "-o", str(out), str(src_path)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"compiling {src_path} failed:\n{proc.stderr}")
    return out
