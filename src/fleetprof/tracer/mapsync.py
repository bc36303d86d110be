"""Mirror the process tracker's executable mappings into the BPF `mappings` LPM trie and `known_pids`.

An address range becomes the set of aligned power-of-two blocks that cover it exactly; each block is one
(pid, prefix) key, so a lookup of (pid, pc) finds the mapping in one trie walk.
"""

from __future__ import annotations

import os
import struct
import threading
from dataclasses import dataclass

from fleetprof.bpf.libbpf import BpfError, Map
from fleetprof.tracer import layout

_KEY_HEAD = struct.Struct("<II")
_ADDR_BE = struct.Struct(">Q")
PID_BITS = 32


def lpm_blocks(start: int, end: int) -> list[tuple[int, int]]:
    """Aligned blocks (address, prefix bits of the 64-bit address) covering [start, end) exactly."""
    out: list[tuple[int, int]] = []
    while start < end:
        size = (start & -start) if start else 1 << 64
        while size > end - start:
            size >>= 1
        out.append((start, 64 - (size.bit_length() - 1)))
        start += size
    return out


def mapping_key(pid: int, addr: int, addr_bits: int) -> bytes:
    """The LPM key bytes for (pid, addr/addr_bits)."""
    return _KEY_HEAD.pack(PID_BITS + addr_bits, pid) + _ADDR_BE.pack(addr)


@dataclass(frozen=True, slots=True)
class MappingValue:
    """What BPF learns about one mapping."""

    file_id: int  # 64-bit key of the file id
    bias: int  # runtime address - ELF virtual address
    flags: int  # MAPPING_FLAG_*

    def pack(self) -> bytes:
        """struct mapping_info."""
        return layout.MAPPING_INFO_STRUCT.pack(self.file_id, self.bias & 0xFFFFFFFFFFFFFFFF, self.flags, 0)


class MappingsMap:
    """Keeps the kernel's view of (pid, range) -> mapping in step with userspace; thread-safe."""

    def __init__(self, mappings: Map, known_pids: Map) -> None:
        self._map = mappings
        self._known = known_pids
        self._keys: dict[int, dict[tuple[int, int], list[bytes]]] = {}
        self._marked: set[int] = set()  # pids put into known_pids (only userspace adds entries there)
        self._lock = threading.Lock()
        self.entries = 0
        self.failures = 0

    def add(self, pid: int, start: int, end: int, value: MappingValue) -> None:
        """Insert or replace the mapping [start, end) of `pid`."""
        packed = value.pack()
        keys = [mapping_key(pid, addr, bits) for addr, bits in lpm_blocks(start, end)]
        with self._lock:
            per_pid = self._keys.setdefault(pid, {})
            old = per_pid.get((start, end))
            for key in keys:
                try:
                    self._map.update(key, packed)
                except BpfError:
                    self.failures += 1
            if old is None:
                self.entries += len(keys)
            per_pid[(start, end)] = keys

    def remove(self, pid: int, start: int, end: int) -> None:
        """Drop the mapping [start, end) of `pid`."""
        with self._lock:
            keys = self._keys.get(pid, {}).pop((start, end), None)
            for key in keys or ():
                self._map.delete(key)
                self.entries -= 1

    def mark_known(self, pid: int) -> None:
        """Tell BPF the pid has been scanned (so misses report EVENT_UNKNOWN_PC, not EVENT_NEW_PID)."""
        with self._lock:
            self._marked.add(pid)
        self._known.update(struct.pack("<I", pid), b"\x01")

    def remove_pid(self, pid: int) -> None:
        """Drop every mapping of `pid` (exit or exec) and its known mark; a pid never marked (most short-lived
        processes are never sampled) costs no syscall."""
        with self._lock:
            ranges = self._keys.pop(pid, {})
            for keys in ranges.values():
                for key in keys:
                    self._map.delete(key)
                    self.entries -= 1
            marked = pid in self._marked
            self._marked.discard(pid)
        if marked:
            self._known.delete(struct.pack("<I", pid))


def kernel_dev(dev: int) -> int:
    """A dev_t as userspace sees it (os.makedev) in the kernel's internal encoding (major << 20 | minor)."""
    return (os.major(dev) << 20) | os.minor(dev)


class InodeMap:
    """Mirrors the files the agent knows into `file_inodes` (inode -> file key, segment delta, flags), so BPF
    can unwind a process from its first sample, before its maps are read; thread-safe."""

    def __init__(self, inodes: Map) -> None:
        self._map = inodes
        self._known: dict[tuple[int, int, int], tuple[int, int, int]] = {}
        self._lock = threading.Lock()
        self.failures = 0

    def add(self, dev: int, ino: int, mtime_ns: int, file_key: int, seg_delta: int, flags: int) -> None:
        """Register a file (`dev` as in /proc/PID/maps); a changed entry is rewritten."""
        key = (kernel_dev(dev), ino, mtime_ns)
        value = (file_key, seg_delta, flags)
        with self._lock:
            if self._known.get(key) == value:
                return
            try:
                packed = layout.INODE_INFO_STRUCT.pack(file_key, seg_delta, flags, 0)
                self._map.update(layout.INODE_KEY_STRUCT.pack(*key), packed)
            except BpfError:
                self.failures += 1
                return
            self._known[key] = value

    def remove_files(self, file_keys: set[int]) -> None:
        """Forget every inode of these files (no process maps them any more; the map is bounded)."""
        with self._lock:
            for key, value in list(self._known.items()):
                if value[0] in file_keys:
                    self._map.delete(layout.INODE_KEY_STRUCT.pack(*key))
                    del self._known[key]

    def lookup(self, kdev: int, ino: int, mtime_ns: int) -> tuple[int, int, int] | None:
        """(file key, segment delta, flags) of a file by its kernel-encoded inode identity."""
        return self._known.get((kdev, ino, mtime_ns))

    def __len__(self) -> int:
        return len(self._known)
