"""Shared helpers for the CPython tests (no tests here): the interpreters on this machine, parked children."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "python"
CHAIN = FIXTURES / "chain.py"
PYENV = Path("/root/.pyenv/versions")
DEBIAN_PYTHON = Path("/usr/bin/python3.11")
DEBIAN_LIBPYTHON = Path("/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0")


@dataclass(frozen=True)
class Interpreter:
    """One CPython on the machine: its executable, and its libpython (None when linked statically)."""

    name: str
    executable: Path
    library: Path | None
    minor: int


def pyenv_glob(pattern: str) -> list[Path]:
    """pyenv's files matching `pattern`, sorted; none when pyenv's tree can't be read (root's, for another
    user)."""
    try:
        return sorted(PYENV.glob(pattern))
    except OSError:
        return []


def interpreters() -> list[Interpreter]:
    """pyenv's 3.8+ builds and Debian's statically linked python3.11, those present on this machine."""
    found = []
    for version in sorted(pyenv_glob("3.*"), key=lambda p: tuple(int(x) for x in p.name.split("."))):
        minor = int(version.name.split(".")[1])
        library = version / "lib" / f"libpython3.{minor}.so.1.0"
        executable = version / "bin" / f"python3.{minor}"
        if minor >= 8 and library.exists() and executable.exists():
            found.append(Interpreter(f"pyenv-{version.name}", executable, library, minor))
    if DEBIAN_PYTHON.exists():
        found.append(Interpreter("debian-3.11", DEBIAN_PYTHON, None, 11))
    return found


def interpreter_params() -> list:
    """pytest parameters, one per interpreter (a single skip when there is none)."""
    found = interpreters()
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no CPython 3.8+ on this machine"))]
    return [pytest.param(i, id=i.name) for i in found]


def chain_lines() -> dict[str, int]:
    """Line numbers of the `# LINE name` markers in chain.py."""
    out = {}
    for number, text in enumerate(CHAIN.read_text(encoding="utf-8").splitlines(), start=1):
        found = re.search(r"# LINE (\S+)", text)
        if found:
            out[found.group(1)] = number
    return out


@dataclass
class Parked:
    """A running chain.py child whose threads are all blocked at known lines."""

    process: subprocess.Popen
    threads: dict[str, int]  # thread name -> threading ident (pthread_t)
    version: tuple[int, int, int]

    @property
    def pid(self) -> int:
        return self.process.pid


def _wait_blocked_in_read(pid: int, fd: int, count: int, timeout: float = 10.0) -> None:
    """Wait until `count` threads of `pid` sit in read(fd, ...) (x86-64 syscall 0)."""
    deadline = time.monotonic() + timeout
    prefix = f"0 {fd:#x} "
    while time.monotonic() < deadline:
        blocked = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                blocked += (task / "syscall").read_text().startswith(prefix)
            except OSError:
                continue
        if blocked >= count:
            return
        time.sleep(0.01)
    pytest.fail(f"pid {pid}: its threads did not all block in read({fd})")


@contextmanager
def parked_chain(interpreter: Interpreter) -> Iterator[Parked]:
    """Run chain.py under `interpreter` until every thread is parked; kill it afterwards."""
    read_end, write_end = os.pipe()
    process = subprocess.Popen(
        [str(interpreter.executable), str(CHAIN), str(read_end)],
        pass_fds=(read_end,),
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )
    os.close(read_end)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if not line:
            pytest.fail(f"{interpreter.name}: chain.py exited with {process.wait(timeout=10)}")
        info = json.loads(line)
        _wait_blocked_in_read(process.pid, read_end, len(info["threads"]))
        yield Parked(process, info["threads"], tuple(info["version"]))
    finally:
        process.kill()
        process.wait(timeout=10)
        os.close(write_end)
        if process.stdout:
            process.stdout.close()
