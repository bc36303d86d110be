"""Without the privileges to load BPF, `record` and `top` say which capability is missing in one line and
exit with status 2, before touching the output file; an installation the user can't read is one line and
status 2 as well.

The unprivileged runs use a world-readable copy of fleetprof and its dependencies and a Python that user can
run, so they work wherever the checkout lives, a private (0700) directory included.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import fleetprof

NOBODY = 65534


def _unprivileged(argv: list[str]) -> list[str]:
    """`argv` run as nobody with no capabilities (as is, when the tests already run unprivileged)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("setpriv is not installed (make setup installs it: util-linux)")
    return [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all", *argv]  # fmt: skip


def _user() -> str:
    """How fleetprof names the unprivileged user in its messages."""
    uid = NOBODY if os.geteuid() == 0 else os.geteuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _runtime_distributions() -> list[str]:
    """fleetprof's run-time dependencies, transitively (no extras): the distributions to copy."""
    seen: set[str] = set()
    todo = ["fleetprof"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(seen - {"fleetprof"})


def _copy_install(site: Path) -> None:
    """fleetprof (from wherever it is imported) and its dependencies' files into `site`."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(fleetprof.__file__).parent, site / "fleetprof", ignore=ignore)
    for name in _runtime_distributions():
        dist = distribution(name)
        for rel in dist.files or []:
            if ".." in rel.parts or "__pycache__" in rel.parts:
                continue
            target = site / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(str(dist.locate_file(rel))), target)


def _make_readable(root: Path) -> None:
    """Every directory 0755 and file 0644 (0755 when executable), whatever the umask of the source."""
    for path in [root, *root.rglob("*")]:
        executable = path.is_dir() or path.stat().st_mode & stat.S_IXUSR
        path.chmod(0o755 if executable else 0o644)


def _python_for_nobody(env: dict[str, str]) -> str | None:
    """A Python of this minor version that the unprivileged user can run, or None."""
    minor = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [
        sys.executable,
        os.path.realpath(sys.executable),
        os.path.realpath(getattr(sys, "_base_executable", sys.executable)),
        shutil.which(f"python{minor}") or "",
        f"/usr/bin/python{minor}",
    ]
    for python in dict.fromkeys(c for c in candidates if c):
        probe = [python, "-S", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
        proc = subprocess.run(_unprivileged(probe), capture_output=True, text=True, timeout=60, env=env)
        if proc.returncode == 0 and proc.stdout.strip() == minor:
            return python
    return None


@dataclass(frozen=True)
class Install:
    """A world-readable copy of fleetprof and its dependencies, and how to run it unprivileged."""

    site: Path
    work: Path
    python: str
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`fleetprof ARGS` as the unprivileged user."""
        # -S: no site module, so only the copy is importable (not a venv's site-packages by chance)
        argv = _unprivileged([self.python, "-S", "-m", "fleetprof", *args])
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=self.env, cwd=self.work)


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    """The copy, in a fresh world-readable directory under the system's temporary directory."""
    top = Path(tempfile.mkdtemp(prefix="fleetprof-unprivileged-"))
    try:
        site, work = top / "site", top / "work"
        _copy_install(site)
        work.mkdir()
        _make_readable(top)
        work.chmod(0o777)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(site),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
        }
        python = _python_for_nobody(env)
        if python is None:
            pytest.skip(f"no Python {sys.version_info[0]}.{sys.version_info[1]} that {_user()} can run")
        yield Install(site, work, python, env)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("args", [["record", "-o", "{out}", "--", "true"], ["top", "--iterations", "1"]])
def test_missing_privileges_is_one_line_and_status_2(install: Install, args: list[str]) -> None:
    out = install.work / "p.folded"
    proc = install.run(*(a.format(out=out) for a in args))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "CAP_BPF" in lines[0] and lines[0].startswith("fleetprof: "), proc.stderr
    assert not out.exists()


def test_unreadable_module_is_one_line_and_status_2(install: Install) -> None:
    """A file of fleetprof this user can't read: its path, and why, in one line."""
    module = install.site / "fleetprof" / "cli" / "record.py"
    module.chmod(0)
    try:
        proc = install.run("record", "--", "true")
    finally:
        module.chmod(0o644)
    assert proc.returncode == 2, proc.stderr
    assert (
        proc.stderr
        == f"fleetprof: cannot read {module}: fleetprof is installed where {_user()} can't read it\n"
    )


@pytest.mark.parametrize(
    ("folder", "module"), [("fleetprof/agent", "fleetprof.agent.build"), ("symbolic", "symbolic")]
)
def test_unreadable_package_is_one_line_and_status_2(install: Install, folder: str, module: str) -> None:
    """A package folder of fleetprof, or of a dependency, this user can't enter: which import failed, in one
    line, and for which Python."""
    path = install.site / folder
    path.chmod(0)
    try:
        proc = install.run("record", "--", "true")
    finally:
        path.chmod(0o755)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"fleetprof: cannot import {module} ("), line
    assert line.endswith(f"must be installed where {_user()} can read them, for {install.python}"), line
