"""The Zend engine in one running process: which mapped file it is, its load bias, and EG's address.

`find_php` does the whole job from /proc for tests, the reference walker and local tools; it never
raises, and says in one line why a process has no walkable PHP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from fleetprof.interpreters.php.discovery import (
    PhpBinary,
    PhpUnsupported,
    inspect_php_binary,
    is_php_name,
)
from fleetprof.process.bias import file_bias
from fleetprof.process.maps import MapKind, parse_maps
from fleetprof.process.procfs import ProcFS

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
    procfs = ProcFS()
    try:
        start_time = procfs.stat(pid).start_time
        entries, _ = parse_maps(procfs.read_bytes(pid, "maps"))
        exe = procfs.exe(pid)
    except OSError as exc:
        return PhpUnsupported(f"process {pid} unreadable ({exc.strerror or exc})", is_php=False)
    mappings = [e for e in entries if e.kind is MapKind.FILE and not e.deleted]
    names = [exe] + [m.path for m in mappings if is_php_name(m.path)]
    unsupported: PhpUnsupported | None = None
    for path in dict.fromkeys(name for name in names if name):
        readable = procfs.rooted(pid, path)
        readable = readable if os.path.exists(readable) else path
        found = inspect_php_binary(readable)
        if isinstance(found, PhpUnsupported):
            unsupported = unsupported or found
            continue
        if found is None:
            continue
        bias = file_bias(readable, [m for m in mappings if m.path == path])
        if bias is None:
            unsupported = unsupported or PhpUnsupported(f"{path}: no mapping matches its PT_LOADs")
            continue
        return PhpProcess(pid, found, bias, start_time)
    return unsupported or NOT_PHP
