"""The web UI's own unit tests (Vitest: URL state, flame tree layout/search/hit testing, colours, tables,
formatting, escaping), run from pytest so `make test` covers them."""

from __future__ import annotations

import subprocess

from tests.web.conftest import WEB, ensure_node_modules


def test_vitest_suite_passes():
    ensure_node_modules()
    done = subprocess.run(
        ["npx", "--no-install", "vitest", "run", "--reporter=dot"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"vitest failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    assert "passed" in done.stdout


def test_typescript_compiles():
    ensure_node_modules()
    done = subprocess.run(
        ["npx", "--no-install", "tsc", "--noEmit"],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"tsc:\n{done.stdout[-4000:]}"
