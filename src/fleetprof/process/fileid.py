"""File identity: the GNU build id where present, else a hash of the file's head, tail and size.

A file id is 128 bits, written as 32 hex digits. BPF maps key files by its first 64 bits
(`file_id_u64`). The build id form lets the backend match uploaded debug files by build id alone.
"""

from __future__ import annotations

import hashlib
import os
import struct

_CHUNK = 4096


def file_id_from_build_id(build_id: str) -> str:
    """128-bit file id from a GNU build id (hex): its first 16 bytes, zero-padded if shorter."""
    raw = bytes.fromhex(build_id)[:16]
    return raw.ljust(16, b"\0").hex()


def file_id_from_content(fd_or_path: int | str) -> str:
    """128-bit file id from SHA-256(first 4 KiB ‖ last 4 KiB ‖ big-endian u64 size)."""
    own = isinstance(fd_or_path, str)
    fd = os.open(fd_or_path, os.O_RDONLY | os.O_CLOEXEC) if own else fd_or_path
    try:
        size = os.fstat(fd).st_size
        digest = hashlib.sha256()
        digest.update(os.pread(fd, _CHUNK, 0))
        digest.update(os.pread(fd, _CHUNK, max(size - _CHUNK, 0)))
        digest.update(struct.pack(">Q", size))
        return digest.digest()[:16].hex()
    finally:
        if own:
            os.close(fd)


def file_id(path: str, build_id: str = "") -> str:
    """The file id of `path`: from `build_id` when given, else from the content."""
    if build_id:
        return file_id_from_build_id(build_id)
    return file_id_from_content(path)


def file_id_u64(fid: str) -> int:
    """The 64-bit key BPF uses for a file id (its first 8 bytes, little-endian)."""
    return int.from_bytes(bytes.fromhex(fid)[:8], "little")
