"""Go frames for `lookup.FileSymbols`: a pclntab read from the ELF file (host) or from a bundle (server).

Both paths run the same `Pclntab` over the same bytes: a bundle carries the pclntab verbatim, its text
start, and a copy of every inline tree (the only data outside the pclntab that frames need), so the
server names Go frames exactly as the host does.
"""

from __future__ import annotations

import struct
from typing import Any

from fleetprof.elf.view import ElfError
from fleetprof.symbolize.golang.elffile import GoElf
from fleetprof.symbolize.golang.pclntab import Pclntab, PclntabError
from fleetprof.symbolize.lookup import NativeFrame

_TREE_ENTRY = struct.Struct("<QII")  # funcdata value, offset in the blob, size


class GoSymbols:
    """Frames for ELF addresses of one Go binary, outermost first; None for addresses it doesn't hold."""

    def __init__(self, table: Pclntab, owner: GoElf | None = None, how: str = "") -> None:
        self.table = table
        self.problem = ""  # the first damaged spot met in a lookup ("" when none)
        self.how = how
        self._owner = owner

    @property
    def note(self) -> str:
        """One line saying where the frames come from (for the symbolizer's notes)."""
        how = f", found by {self.how}" if self.how and self.how != "section" else ""
        return f"Go {self.table.version}+ pclntab{how}: names, lines and inlined frames"

    def lookup(self, addr: int) -> tuple[NativeFrame, ...] | None:
        """Frames for `addr`, None when no Go function holds it or its table is damaged there."""
        try:
            found = self.table.frames(addr)
        except PclntabError as exc:
            self.problem = self.problem or str(exc)
            return None
        if found is None:
            return None
        return tuple(
            NativeFrame(
                function=f.function, file=f.file, line=f.line, inlined=f.inlined, start_line=f.start_line
            )
            for f in found
        )

    def close(self) -> None:
        """Release the file mapping (host side)."""
        if self._owner is not None:
            self._owner.close()
            self._owner = None

    def export(self) -> tuple[dict[str, Any], bytes, bytes]:
        """(header fields, pclntab bytes, inline trees blob) for a symbol bundle."""
        table = self.table
        trees: dict[int, int] = {}
        for key, size in table.inline_trees():
            trees[key] = max(size, trees.get(key, 0))
        index = bytearray(struct.pack("<I", len(trees)))
        body = bytearray()
        assert table.funcdata is not None or not trees
        for key, size in sorted(trees.items()):
            raw = table.funcdata(key, 0, size) if table.funcdata else None
            if raw is None or len(raw) != size:
                continue
            index += _TREE_ENTRY.pack(key, len(body), size)
            body += raw
        struct.pack_into("<I", index, 0, (len(index) - 4) // _TREE_ENTRY.size)
        meta = {"version": table.version, "text_start": table.text_start, "how": self.how}
        return meta, table.raw(), bytes(index + body)

    @classmethod
    def from_export(
        cls, meta: dict[str, Any], pclntab: bytes | memoryview, trees: bytes | memoryview
    ) -> GoSymbols:
        """The inverse of `export`; raises PclntabError (one line) for bad bytes."""
        try:
            reader = _TreeBlob(bytes(trees))
            text_start = int(meta.get("text_start", 0))
            table = Pclntab(bytes(pclntab), text_start=text_start or None, funcdata=reader.read)
        except (TypeError, ValueError, struct.error) as exc:
            if isinstance(exc, PclntabError):
                raise
            raise PclntabError(f"bad Go section: {exc}") from None
        return cls(table, how=str(meta.get("how", "")))


class _TreeBlob:
    """Inline trees copied into a bundle, read by funcdata value."""

    def __init__(self, data: bytes) -> None:
        (count,) = struct.unpack_from("<I", data) if len(data) >= 4 else (0,)
        start = 4 + count * _TREE_ENTRY.size
        if len(data) < start:
            raise PclntabError("bad Go section: inline tree index truncated")
        self._index = {key: (at, size) for key, at, size in _TREE_ENTRY.iter_unpack(data[4:start])}
        self._body = data[start:]
        if any(at + size > len(self._body) for at, size in self._index.values()):
            raise PclntabError("bad Go section: inline tree out of range")

    def read(self, key: int, offset: int, size: int) -> bytes | None:
        """`size` bytes at `offset` into the tree `key`, None when outside what was copied."""
        found = self._index.get(key)
        if found is None or offset < 0 or offset + size > found[1]:
            return None
        at = found[0] + offset
        return self._body[at : at + size]


def open_go_symbols(path: str) -> tuple[GoSymbols | None, str]:
    """(Go symbols of the ELF file at `path` or None, a one-line problem when its pclntab is unusable)."""
    try:
        owner = GoElf(path)
    except (ElfError, PclntabError, OSError) as exc:
        text = str(exc).strip().splitlines()
        return None, f"Go pclntab unusable ({text[0][:200] if text else type(exc).__name__})"
    if owner.table is None or owner.location is None:
        owner.close()
        return None, ""
    return GoSymbols(owner.table, owner, owner.location.how), ""
