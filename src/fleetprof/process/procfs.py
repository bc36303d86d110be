"""Reads of /proc the tracker needs, under a configurable root so tests can use a fake tree.

A process that vanishes shows up as `ProcessGone` (ENOENT, ESRCH); other failures stay `OSError`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass

_GONE_ERRNOS = frozenset({errno.ENOENT, errno.ESRCH, errno.ENOTDIR})
_PERMISSION_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


class ProcessGone(OSError):
    """The process (or thread) no longer exists (an OSError, so broad OSError handlers see it too)."""


def failure_reason(exc: BaseException) -> str:
    """A short counter name for why a /proc or file read failed: gone, permission, or io."""
    if isinstance(exc, ProcessGone):
        return "gone"
    if isinstance(exc, OSError):
        if exc.errno in _GONE_ERRNOS:
            return "gone"
        if exc.errno in _PERMISSION_ERRNOS:
            return "permission"
    return "io"


@dataclass(frozen=True, slots=True)
class StatInfo:
    """The fields of /proc/PID/stat the tracker uses."""

    comm: str
    state: str
    ppid: int
    start_time: int  # field 22, clock ticks after boot: (pid, start_time) names a process uniquely


def parse_stat(text: str) -> StatInfo:
    """Parse /proc/PID/stat; comm may hold spaces and parentheses, so split at the last ')'."""
    open_at = text.index("(")
    close_at = text.rindex(")")
    rest = text[close_at + 2 :].split()
    return StatInfo(
        comm=text[open_at + 1 : close_at],
        state=rest[0],
        ppid=int(rest[1]),
        start_time=int(rest[19]),
    )


class ProcFS:
    """Paths and reads under a procfs root (`/proc` unless told otherwise)."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root.rstrip("/") or "/"

    def path(self, pid: int, *parts: str) -> str:
        """`ROOT/PID/part/...`."""
        return "/".join((self.root, str(pid), *parts))

    def pids(self) -> list[int]:
        """Every process id listed in the root, ascending."""
        try:
            names = os.listdir(self.root)
        except OSError:
            return []
        return sorted(int(name) for name in names if name.isdigit())

    def descendants(self, pids: Iterable[int]) -> set[int]:
        """Every process below `pids` in the process tree now (children, their children, ...), not `pids`
        themselves; processes gone while the tree is read are left out."""
        children: dict[int, list[int]] = {}
        for pid in self.pids():
            try:
                children.setdefault(self.stat(pid).ppid, []).append(pid)
            except (OSError, ValueError, IndexError):
                continue
        found: set[int] = set()
        todo = list(pids)
        while todo:
            for child in children.get(todo.pop(), ()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found - set(pids)

    def tids(self, pid: int) -> list[int]:
        """Thread ids of `pid`, ascending (empty when the process is gone)."""
        try:
            names = os.listdir(self.path(pid, "task"))
        except OSError:
            return []
        return sorted(int(name) for name in names if name.isdigit())

    def read_bytes(self, pid: int, *parts: str) -> bytes:
        """Whole content of `ROOT/PID/parts`; ENOENT and ESRCH become `ProcessGone`."""
        try:
            with open(self.path(pid, *parts), "rb", buffering=0) as stream:
                chunks = []
                while chunk := stream.read(65536):
                    chunks.append(chunk)
                return b"".join(chunks)
        except OSError as exc:
            if exc.errno in _GONE_ERRNOS:
                raise ProcessGone(pid) from None
            raise

    def read_text(self, pid: int, *parts: str) -> str:
        """Like `read_bytes`, decoded (undecodable bytes kept as surrogates)."""
        return self.read_bytes(pid, *parts).decode("utf-8", "surrogateescape")

    def stat(self, pid: int) -> StatInfo:
        """Parsed /proc/PID/stat; a malformed file counts as gone (it only happens mid-exit or in fakes)."""
        text = self.read_text(pid, "stat")
        try:
            return parse_stat(text)
        except (ValueError, IndexError):
            raise ProcessGone(pid) from None

    def exe(self, pid: int) -> str:
        """Target of /proc/PID/exe without ` (deleted)`; "" for kernel threads or when unreadable."""
        try:
            target = os.readlink(self.path(pid, "exe"))
        except OSError:
            return ""
        return target.removesuffix(" (deleted)")

    def thread_comm(self, pid: int, tid: int) -> str:
        """Name of thread `tid` of `pid` from /proc/PID/task/TID/comm."""
        return self.read_text(pid, "task", str(tid), "comm").rstrip("\n")

    def read_mem(self, pid: int, address: int, length: int) -> bytes:
        """`length` bytes of the process' memory at `address` (needs ptrace access)."""
        try:
            fd = os.open(self.path(pid, "mem"), os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in _GONE_ERRNOS:
                raise ProcessGone(pid) from None
            raise
        try:
            data = os.pread(fd, length, address)
        finally:
            os.close(fd)
        if len(data) != length:
            raise OSError(errno.EIO, f"short read of {length} bytes at {address:#x} in pid {pid}")
        return data

    def map_file(self, pid: int, start: int, end: int) -> str:
        """`/proc/PID/map_files/START-END`: the mapped file itself, even deleted or in another mount ns."""
        return self.path(pid, "map_files", f"{start:x}-{end:x}")

    def rooted(self, pid: int, path: str, tid: int = 0) -> str:
        """`path` seen through the process' root (`/proc/PID[/task/TID]/root/PATH`)."""
        if tid:
            return self.path(pid, "task", str(tid), "root") + path
        return self.path(pid, "root") + path
