"""On-disk cache of built SymCaches, one entry per file id, versioned, written atomically.

An entry is `<id>.meta` (JSON header + code extents) plus one `<id>.<role>.symc` per SymCache ("debug"
from a separate debug file, "self" from the binary). SymCaches are reopened with mmap, so a warm load
costs a few stat/open calls and resident memory stays proportional to the pages actually looked up.
Entries are self-contained: the server can symbolize by file id without the original file.
"""

from __future__ import annotations

import json
import os
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from symbolic import SymCache
from symbolic.exceptions import SymbolicError
from symbolic.symcache import SYMCACHE_LATEST_VERSION

from fleetprof.symbolize.extents import CodeExtents

STORE_FORMAT = 1
_MAGIC = b"FPSYM\x01\n\x00"


@dataclass(frozen=True, slots=True)
class PartInfo:
    """Where one SymCache came from and how to map ELF addresses into it."""

    role: str  # "debug" (separate debug file) or "self" (the binary)
    load_address: int  # first PT_LOAD p_vaddr of the source: SymCache addresses are relative to it
    source: str  # path the SymCache was built from
    size: int = 0  # serialized size, checked on load


@dataclass(slots=True)
class StoredSymbols:
    """Everything needed to symbolize one file id."""

    file_id: str
    parts: list[PartInfo]
    symcaches: list[SymCache]
    extents: CodeExtents
    dwarf_path: str = ""  # file whose DWARF gives start lines, "" when none
    debug_path: str = ""  # separate debug file used, "" when none
    build_id: str = ""
    note: str = ""  # why symbols are limited (e.g. stripped, no debug file), "" when complete


class SymcacheStore:
    """Load and save `StoredSymbols` under one directory; never raises for I/O trouble."""

    def __init__(self, directory: str | Path | None) -> None:
        self.disabled_reason = ""
        self._root: Path | None = None
        if directory is not None:
            self._root = Path(directory) / f"v{STORE_FORMAT}-sc{SYMCACHE_LATEST_VERSION}"

    @property
    def enabled(self) -> bool:
        """Whether entries are persisted."""
        return self._root is not None and not self.disabled_reason

    def _paths(self, file_id: str) -> tuple[Path, Path]:
        assert self._root is not None
        folder = self._root / file_id[:2]
        return folder, folder / f"{file_id}.meta"

    def load(self, file_id: str) -> StoredSymbols | None:
        """The cached entry for `file_id`, or None when absent, stale or damaged."""
        if not self.enabled:
            return None
        folder, meta_path = self._paths(file_id)
        try:
            data = meta_path.read_bytes()
            header, extents = _decode_meta(data)
            parts = [PartInfo(**p) for p in header["parts"]]
            caches = []
            for part in parts:
                path = folder / f"{file_id}.{part.role}.symc"
                if path.stat().st_size != part.size:
                    return None
                caches.append(SymCache.open(str(path)))
        except (OSError, ValueError, KeyError, TypeError, SymbolicError):
            return None
        return StoredSymbols(
            file_id=file_id,
            parts=parts,
            symcaches=caches,
            extents=extents,
            dwarf_path=header.get("dwarf_path", ""),
            debug_path=header.get("debug_path", ""),
            build_id=header.get("build_id", ""),
            note=header.get("note", ""),
        )

    def save(self, stored: StoredSymbols) -> StoredSymbols:
        """Persist `stored`; returns it with SymCaches reopened from disk (mmap) when that worked."""
        if not self.enabled:
            return stored
        folder, meta_path = self._paths(stored.file_id)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            parts = []
            paths = []
            for part, cache in zip(stored.parts, stored.symcaches, strict=True):
                path = folder / f"{stored.file_id}.{part.role}.symc"
                size = _atomic_write(path, cache.dump_into)
                parts.append(PartInfo(part.role, part.load_address, part.source, size))
                paths.append(path)
            header = {
                "format": STORE_FORMAT,
                "file_id": stored.file_id,
                "parts": [
                    {"role": p.role, "load_address": p.load_address, "source": p.source, "size": p.size}
                    for p in parts
                ],
                "dwarf_path": stored.dwarf_path,
                "debug_path": stored.debug_path,
                "build_id": stored.build_id,
                "note": stored.note,
            }
            blob = _encode_meta(header, stored.extents)
            _atomic_write(meta_path, lambda f: f.write(blob))
            stored.symcaches = [SymCache.open(str(p)) for p in paths]
            stored.parts = parts
        except (OSError, SymbolicError) as exc:
            self.disabled_reason = f"symbol cache disabled: {folder}: {getattr(exc, 'strerror', None) or exc}"
        return stored


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> int:
    """Write through `write(file)` to a temp file in the same folder, then rename; returns the size."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
            size = stream.tell()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return size


def _encode_meta(header: dict[str, object], extents: CodeExtents) -> bytes:
    text = json.dumps(header, separators=(",", ":")).encode()
    return _MAGIC + struct.pack("<I", len(text)) + text + extents.to_bytes()


def _decode_meta(data: bytes) -> tuple[dict, CodeExtents]:
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 4:
        raise ValueError("bad meta magic")
    (length,) = struct.unpack_from("<I", data, len(_MAGIC))
    start = len(_MAGIC) + 4
    header = json.loads(data[start : start + length])
    if header.get("format") != STORE_FORMAT:
        raise ValueError("meta format mismatch")
    return header, CodeExtents.from_bytes(data[start + length :])
