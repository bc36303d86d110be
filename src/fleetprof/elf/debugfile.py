"""Find the separate debug file of an ELF file: build-id paths, then `.gnu_debuglink` (GDB's order)."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

DEFAULT_DEBUG_DIRS: tuple[str, ...] = ("/usr/lib/debug",)


def _crc32_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    return crc & 0xFFFFFFFF


def find_debug_file(
    path: str,
    build_id: str = "",
    debuglink: str = "",
    debuglink_crc: int = 0,
    debug_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS,
    root: str = "",
) -> str | None:
    """Return the path of the separate debug file for `path`, or None.

    `root` prefixes every searched path (e.g. "/proc/PID/root" for a process in another mount namespace).
    A `.gnu_debuglink` candidate is accepted only when its CRC32 matches.
    """
    if build_id and len(build_id) > 2:
        for ddir in debug_dirs:
            cand = Path(f"{root}{ddir}/.build-id/{build_id[:2]}/{build_id[2:]}.debug")
            if cand.is_file():
                return str(cand)
    if debuglink:
        real_dir = os.path.dirname(path)
        candidates = [
            f"{root}{real_dir}/{debuglink}",
            f"{root}{real_dir}/.debug/{debuglink}",
            *(f"{root}{ddir}{real_dir}/{debuglink}" for ddir in debug_dirs),
        ]
        for cand_str in candidates:
            cand = Path(cand_str)
            if cand.is_file() and os.path.realpath(cand) != os.path.realpath(f"{root}{path}"):
                try:
                    if not debuglink_crc or _crc32_of(cand) == debuglink_crc:
                        return str(cand)
                except OSError:
                    continue
    return None
