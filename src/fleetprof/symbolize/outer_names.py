"""The names an outermost frame shows for each function symbol, demangled once when a bundle is built.

Demangling costs microseconds a name, more than the rest of a central lookup: a bundle (format 2)
carries the shown name of every symbol of its extents whose shown name is not its own (C++, Rust, GCC
clones), so the server reads them instead of demangling (`symbolize.batch`).

Section layout (little-endian): u64 symbols, u64 text bytes, one u32 per symbol (offset of its shown
name in the text, `SAME` when it is the symbol's own name without its version), the NUL-terminated names.
"""

from __future__ import annotations

import struct
from array import array

from fleetprof.symbolize.demangle import demangle
from fleetprof.symbolize.extents import CodeExtents
from fleetprof.symbolize.lookup import _CLONE_SUFFIX

SAME = 0xFFFFFFFF
_HEAD = struct.Struct("<QQ")


def outer_name(raw: str) -> str:
    """What `FileSymbols.name_fields` shows for the outermost frame of a symbol named `raw` (its version
    dropped): without GCC clone suffixes, demangled; "" when that leaves nothing."""
    base = _CLONE_SUFFIX.sub("", raw) if "." in raw else raw
    return demangle(base) if base else ""


def encode_outer_names(extents: CodeExtents) -> bytes:
    """The section for `extents`: each symbol's shown name where it is not its own."""
    offsets = array("I")
    text = bytearray()
    for index in range(len(extents.starts)):
        raw = extents.name_at(index).partition("@")[0]
        shown = outer_name(raw)
        if shown == raw:
            offsets.append(SAME)
            continue
        offsets.append(len(text))
        text += shown.encode() + b"\0"
    return _HEAD.pack(len(offsets), len(text)) + offsets.tobytes() + bytes(text)


class OuterNames:
    """A decoded section: `names(symbols)` are their shown names, None where it is their own."""

    __slots__ = ("_base", "_data", "_offsets")

    def __init__(self, data: bytes | memoryview, symbols: int) -> None:
        """Check the section against the extents' `symbols` count; ValueError when they disagree."""
        if len(data) < _HEAD.size:
            raise ValueError("outer names truncated")
        count, length = _HEAD.unpack_from(data)
        if count != symbols or len(data) != _HEAD.size + 4 * count + length:
            raise ValueError("outer names size mismatch")
        if length and data[-1] != 0:
            raise ValueError("outer names unterminated")
        self._offsets = array("I")
        self._offsets.frombytes(data[_HEAD.size : _HEAD.size + 4 * count])
        self._base = _HEAD.size + 4 * count
        self._data = data if isinstance(data, bytes) else bytes(data)  # read in place when it can be

    def names(self, symbols: list[int]) -> list[str | None]:
        """The shown name of each of `symbols` (indexes into the extents), None where it is its own, ""
        where a damaged section has none."""
        data, base = self._data, self._base
        find = data.index
        try:
            return [
                None if offset == SAME else data[base + offset : find(b"\0", base + offset)].decode()
                for offset in map(self._offsets.__getitem__, symbols)
            ]
        except ValueError:  # an offset past the text (it ends with a NUL), or not UTF-8
            return [self._name(self._offsets[symbol]) for symbol in symbols]

    def _name(self, offset: int) -> str | None:
        """The name at `offset` of the text ("" past its end), None for `SAME`."""
        if offset == SAME:
            return None
        at = self._base + offset
        return (
            self._data[at : self._data.index(b"\0", at)].decode("utf-8", "replace")
            if at < len(self._data)
            else ""
        )
