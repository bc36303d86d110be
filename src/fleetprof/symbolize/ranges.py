"""The address ranges of a SymCache (format 9), read from its bytes so lookups can be memoized per range.

SymCache answers every address of one range (a start; the next range's start ends it) with the same
chain of source locations. Knowing the range of an address (one bisect over an array) lets the lookup
code ask SymCache once per range instead of once per address. Any other format version, or a layout
that doesn't add up, yields no index: lookups then simply ask SymCache for every address.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from itertools import pairwise

from symbolic import SymCache
from symbolic._lowlevel import ffi, lib
from symbolic.exceptions import SymbolicError

SUPPORTED_VERSION = 9
_PREAMBLE = struct.Struct("<4sI")  # magic, version
_COUNTS = struct.Struct("<6I")  # arch, files, functions, source locations, ranges, string bytes
_COUNTS_AT = 8 + 32  # after the preamble and the 32-byte debug id
_HEADER_END = 8 + 72
_SIZES = (24, 16, 16)  # File, Function, SourceLocation records (format 9)


class RangeIndex:
    """Sorted range starts of one SymCache; `find(addr)` is the index of the range holding `addr`."""

    __slots__ = ("starts",)

    def __init__(self, starts: array) -> None:
        self.starts = starts

    def find(self, addr: int) -> int:
        """Index of the range containing `addr` (relative to the cache), -1 before the first one."""
        return bisect.bisect_right(self.starts, addr) - 1

    def __len__(self) -> int:
        return len(self.starts)


def read_ranges(data: bytes | memoryview) -> RangeIndex | None:
    """The range index of the serialized SymCache `data`, None for another version or a bad layout."""
    parsed = _layout(bytes(data[:_HEADER_END]))
    if parsed is None or parsed[2] > len(data):
        return None
    return _index(data[parsed[0] : parsed[1]])


def symcache_ranges(cache: SymCache) -> RangeIndex | None:
    """The range index of a loaded SymCache, read through its buffer (the ranges only are copied)."""
    try:
        size = cache._methodcall(lib.symbolic_symcache_get_size)
        view = ffi.buffer(cache._methodcall(lib.symbolic_symcache_get_bytes), size)
    except (SymbolicError, RuntimeError):
        return None
    return read_ranges(memoryview(view))


def _layout(head: bytes) -> tuple[int, int, int] | None:
    """(ranges start, ranges end, bytes needed) from a SymCache header, None when not format 9."""
    if len(head) < _HEADER_END:
        return None
    magic, version = _PREAMBLE.unpack_from(head, 0)
    if magic != b"SYMC" or version != SUPPORTED_VERSION:
        return None
    _arch, files, functions, locations, ranges, string_bytes = _COUNTS.unpack_from(head, _COUNTS_AT)
    if ranges > locations:
        return None
    offset = _align(_HEADER_END)
    for size, count in zip(_SIZES, (files, functions, locations), strict=True):
        offset = _align(offset + size * count)
    end = offset + 4 * ranges
    return offset, end, _align(end) + string_bytes


def _index(body: bytes | memoryview) -> RangeIndex | None:
    starts = array("I")
    if starts.itemsize != 4 or len(body) % 4:
        return None
    starts.frombytes(body)
    if any(a >= b for a, b in pairwise(starts)):  # SymCache binary-searches distinct starts
        return None
    return RangeIndex(starts)


def _align(value: int) -> int:
    return (value + 7) & ~7
