"""Web UI test helpers: where the web app lives, a check that its npm packages are installed, the built UI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "web"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def ensure_node_modules() -> None:
    """`npm ci` in web/ when its packages are missing (make setup did it); fails when npm is absent."""
    if (WEB / "node_modules" / ".package-lock.json").is_file():
        return
    if shutil.which("npm") is None:
        pytest.fail("npm is not installed: run `make setup`")
    done = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode:
        pytest.fail(f"npm ci in web/ failed: {done.stderr.strip()[-800:]}")


def built_ui() -> None:
    """web/dist as `make ui` builds it (built here when missing)."""
    if (WEB / "dist" / "index.html").is_file():
        return
    ensure_node_modules()
    done = subprocess.run(["npm", "run", "build"], cwd=WEB, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
