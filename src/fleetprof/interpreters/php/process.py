"""The Zend engine in one running process: which mapped file it is, its load bias, and EG's address.

`find_php` does the whole job from /proc for tests, the reference walker and local tools; it never
raises, and says in one line why a process has no walkable PHP.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetprof.interpreters.engine import EngineMatch, find_engine
from fleetprof.interpreters.php.discovery import (
    PhpBinary,
    PhpUnsupported,
    inspect_php_binary,
    is_php_name,
)

NOT_PHP = PhpUnsupported("no Zend engine mapped (php, php-fpm, php-cgi or libphp*.so)", is_php=False)


@dataclass(frozen=True, slots=True)
class PhpProcess:
    """A process running the Zend engine of `binary`, loaded at `bias` (runtime - ELF address)."""

    pid: int
    binary: PhpBinary
    bias: int
    start_time: int  # /proc/PID/stat starttime: a different value means a different process

    @property
    def current_execute_data_addr(self) -> int:
        """&EG(current_execute_data) in the process: where every walk starts."""
        return self.binary.executor_globals + self.bias + self.binary.layout.eg_current_execute_data

    @property
    def execute_ex_range(self) -> tuple[int, int]:
        """[start, end) of execute_ex in the process: the native frames that stand for PHP frames."""
        start, size = self.binary.execute_ex
        return start + self.bias, start + self.bias + size


def find_php(pid: int) -> PhpProcess | PhpUnsupported:
    """The Zend engine process `pid` runs, with its bias; else why not (NOT_PHP when there is none).

    Candidates: the executable, then mapped files named like a PHP engine (libphp*.so under Apache or an
    embedding program); deleted files are skipped (their path now names another file, or none).
    """
    found = find_engine(pid, is_php_name, inspect_php_binary, lambda b: isinstance(b, PhpBinary))
    if isinstance(found, EngineMatch):
        return PhpProcess(pid, found.binary, found.bias, found.start_time)
    if isinstance(found, str):
        return PhpUnsupported(found, is_php=not found.startswith("process "))
    return found or NOT_PHP


def jit_buffer(pid: int) -> tuple[int, int] | None:
    """[start, end) of opcache's JIT buffer in process `pid`: its executable *shared* mapping (opcache's
    shared memory: `/dev/zero (deleted)` for mmap, `/SYSV…` or `/dev/shm/…` for the other models, made r-x
    at its end); None when there is none (no opcache, JIT off) or the maps can't be read."""
    try:
        with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as maps:
            lines = maps.read().splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 5 or fields[1][2] != "x" or fields[1][3] != "s":
            continue
        path = fields[5] if len(fields) > 5 else ""
        if path and not path.endswith("(deleted)") and not path.startswith(("/SYSV", "/dev/shm/")):
            continue
        start, _, end = fields[0].partition("-")
        return int(start, 16), int(end, 16)
    return None
