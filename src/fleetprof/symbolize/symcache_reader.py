"""A direct reader of SymCache format 9, so lookups cost array indexing instead of an FFI call each.

SymCache answers every address of one range (a start; the next range's start ends it) with the chain
of source locations at that range's index: a location names a function (name, entry address,
language), a file and a line, and the location it was inlined into. This module reads those arrays
from the cache's bytes without copying them (memoryview casts) and decodes function names itself.
File paths and language names are not rebuilt here: each one is learned from symbolic's own answer the
first time it appears (one FFI lookup per file), and every such answer is compared with what the
arrays say. Any disagreement, another format version or a layout that doesn't add up turns the reader
off, and lookups go through symbolic as before; answers are the same either way.
"""

from __future__ import annotations

import bisect
import operator
import struct
from array import array
from dataclasses import dataclass
from itertools import islice

from symbolic import SymCache

try:
    import numpy as np
except ImportError:  # a host without numpy checks a cache's ranges in Python
    np = None
from symbolic._lowlevel import ffi, lib
from symbolic.exceptions import SymbolicError
from symbolic.utils import rustcall

SUPPORTED_VERSION = 9
NONE = 0xFFFFFFFF  # SymCache's "no index / no offset"
_PREAMBLE = struct.Struct("<4sI")  # magic, version
_COUNTS = struct.Struct("<6I")  # arch, files, functions, source locations, ranges, string bytes
_COUNTS_AT = 8 + 32  # after the preamble and the 32-byte debug id
_HEADER_END = 8 + 72
_FILE_WORDS, _FUNCTION_WORDS, _LOCATION_WORDS = 6, 4, 4  # u32 fields per record (format 9)
_MAX_DEPTH = 256  # longer inline chains are treated as damage
_SELF_CHECKS = 32  # ranges compared with symbolic when a reader is made
_SUFFIX_LIMIT = 1 << 16  # memoized caller chains; the memo restarts when full


@dataclass(frozen=True, slots=True)
class Loc:
    """The fields of one SymCache source location that lookups read (symbolic's SourceLocation)."""

    sym_addr: int
    line: int
    lang: str
    symbol: str
    full_path: str


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the arrays of a format-9 SymCache are (byte offsets) and how many records each has."""

    functions_at: int
    locations_at: int
    ranges_at: int
    strings_at: int
    files: int
    functions: int
    locations: int
    ranges: int
    string_bytes: int


class SymcacheReader:
    """Format-9 SymCache arrays over its bytes: `find` a range, `chain` its locations (innermost first)."""

    __slots__ = (
        "_cache", "_files", "_function_fields", "_functions", "_langs", "_loc_start", "_locs", "_names",
        "_nfunctions", "_nlocs", "_parents", "_paths", "_strings", "_suffixes", "starts", "trusted",
    )  # fmt: skip

    def __init__(self, cache: SymCache, data: memoryview, at: _Layout) -> None:
        self._cache = cache  # owns the bytes when they come from its buffer
        self._files = at.files
        self._functions = data[at.functions_at : at.functions_at + 16 * at.functions].cast("I")
        self._locs = data[at.locations_at : at.locations_at + 16 * at.locations].cast("I")
        self.starts = array("I")
        self.starts.frombytes(data[at.ranges_at : at.ranges_at + 4 * at.ranges])
        self._strings = data[at.strings_at : at.strings_at + at.string_bytes]
        self._loc_start = at.locations - at.ranges
        self._names: dict[int, str] = {}
        self._paths: dict[int, str] = {NONE: ""}
        self._langs: dict[int, str] = {}
        self._nlocs = at.locations
        self._nfunctions = at.functions
        self._suffixes: dict[int, tuple[Loc, ...]] = {}  # location -> its chain (shared inline callers)
        self._parents: dict[int, tuple[int, ...]] = {}  # the same chains, as location indices
        self._function_fields: dict[int, tuple[int, str, str]] = {}  # function -> entry, language, name
        self.trusted = True

    def forget(self) -> None:
        """Drop memoized names and chains (memory only)."""
        self._names.clear()
        self._suffixes.clear()
        self._parents.clear()
        self._function_fields.clear()

    def find(self, rel: int) -> int:
        """Index of the range containing `rel` (an address relative to the cache), -1 before the first."""
        return bisect.bisect_right(self.starts, rel) - 1

    def chain(self, index: int, rel: int) -> tuple[Loc, ...] | None:
        """Locations of range `index` (which holds `rel`), innermost first; None when the reader is off
        or the answer can't be had here (symbolic is then asked)."""
        if not self.trusted:
            return None
        if index < 0:
            return ()
        found = self._walk(index)
        if found is None:
            found = self._learn(index, rel)
        return found

    def chain_indices(self, index: int, rel: int) -> tuple[int, ...] | None:
        """Location indices of range `index` (which holds `rel`), innermost first, each one's file and
        language learned (`location` then reads them); None when the reader is off or the chain can't
        be read here. The same chain `chain` gives, as indices, for lookups that cache by location."""
        if not self.trusted:
            return None
        if index < 0:
            return ()
        found = self._indices(index)
        if found is None:  # a file or language not learned yet: symbolic's answer teaches them
            if self.chain(index, rel) is None or not self.trusted:
                return None
            found = self._indices(index)
        return found

    @property
    def first_location(self) -> int:
        """Index of the location of range 0 (range i's is this plus i)."""
        return self._loc_start

    @property
    def locations(self) -> int:
        """How many locations the cache has."""
        return self._nlocs

    @property
    def file_count(self) -> int:
        """How many files the cache has (a location's file index at or past this names none)."""
        return self._files

    @property
    def function_count(self) -> int:
        """How many functions the cache has."""
        return self._nfunctions

    @property
    def function_words(self) -> memoryview:
        """The functions' u32 fields, four each: name offset, (not read), entry address, language."""
        return self._functions

    def language(self, code: int) -> str | None:
        """The name of language `code` of a function; None when not learned yet."""
        return self._langs.get(code)

    @property
    def location_words(self) -> memoryview:
        """The locations' u32 fields, four each: file, line, function, parent (NONE for none)."""
        return self._locs

    def known_path(self, file_idx: int) -> str | None:
        """The path of file `file_idx` of a location ("" for none); None when not learned yet."""
        return self._paths.get(file_idx if file_idx < self._files else NONE)

    def known_function(self, function: int) -> tuple[int, str, str] | None:
        """(entry address, language, name) of function `function` of a location; None when its
        language has not been learned yet."""
        found = self._function_fields.get(function)
        if found is None:
            if function < self._nfunctions:
                f = function * _FUNCTION_WORDS
                lang = self._langs.get(self._functions[f + 3])
                if lang is None:
                    return None
                found = (self._functions[f + 2], lang, self._name(self._functions[f]))
            else:
                lang = self._langs.get(0)
                if lang is None:
                    return None
                found = (NONE, lang, "?")
            if len(self._function_fields) >= _SUFFIX_LIMIT:
                self._function_fields.clear()
            self._function_fields[function] = found
        return found

    def caller_indices(self, at: int) -> tuple[int, ...] | None:
        """Location indices from `at` up its callers (innermost first); None when one's file or
        language is not learned yet or the chain is too deep."""
        found = self._parents.get(at)
        return found if found is not None else self._indices_from(at)

    def location(self, at: int) -> tuple[int, int, int, str, str, str]:
        """(function index, then `Loc`'s fields: entry address, line, language, function name, file
        path) of location `at`, an index `chain_indices` gave."""
        locs = self._locs
        base = at * _LOCATION_WORDS
        file_idx, line, function = locs[base], locs[base + 1], locs[base + 2]
        path = self._paths[file_idx if file_idx < self._files else NONE]
        named = self._function_fields.get(function)
        if named is None:
            if function < self._nfunctions:
                f = function * _FUNCTION_WORDS
                functions = self._functions
                named = (functions[f + 2], self._langs[functions[f + 3]], self._name(functions[f]))
            else:
                named = (NONE, self._langs[0], "?")
            if len(self._function_fields) >= _SUFFIX_LIMIT:
                self._function_fields.clear()
            self._function_fields[function] = named
        return function, named[0], line, named[1], named[2], path

    def _indices(self, index: int) -> tuple[int, ...] | None:
        """Location indices of range `index` as `_walk` reads them; None when a file or language is
        unknown or the chain is too deep. The callers' part is memoized by the first caller."""
        locs = self._locs
        at = self._loc_start + index
        if at >= self._nlocs:
            return ()
        base = at * _LOCATION_WORDS
        file_idx, line, function, parent = locs[base], locs[base + 1], locs[base + 2], locs[base + 3]
        if file_idx == NONE and line == NONE and function == NONE and parent == NONE:
            return ()  # the end marker after a function
        if not self._known(file_idx, function):
            return None
        if parent == NONE or parent >= self._nlocs:
            return (at,)
        rest = self._parents.get(parent)
        if rest is None:
            rest = self._indices_from(parent)
            if rest is None:
                return None
        return (at, *rest)

    def _indices_from(self, at: int) -> tuple[int, ...] | None:
        """The location indices from `at` up its callers (memoized when all are learned)."""
        start = at
        out = []
        locs = self._locs
        while at != NONE and at < self._nlocs:
            if len(out) >= _MAX_DEPTH - 1:
                return None
            base = at * _LOCATION_WORDS
            if not self._known(locs[base], locs[base + 2]):
                return None
            out.append(at)
            at = locs[base + 3]
        found = tuple(out)
        if len(self._parents) >= _SUFFIX_LIMIT:
            self._parents.clear()
        self._parents[start] = found
        return found

    def _known(self, file_idx: int, function: int) -> bool:
        """Whether the file and language of a location have been learned."""
        if (file_idx if file_idx < self._files else NONE) not in self._paths:
            return False
        lang_code = self._functions[function * _FUNCTION_WORDS + 3] if function < self._nfunctions else 0
        return lang_code in self._langs

    def _walk(self, index: int) -> tuple[Loc, ...] | None:
        """The chain from the arrays; None when a file or language has not been learned yet.

        A range's own location is read each time; the chain of its callers (locations shared by every
        range inlined at the same call site) is memoized by the caller's location."""
        locs = self._locs
        at = self._loc_start + index
        if at >= self._nlocs:
            return ()
        base = at * _LOCATION_WORDS
        file_idx, line, function, parent = locs[base], locs[base + 1], locs[base + 2], locs[base + 3]
        if file_idx == NONE and line == NONE and function == NONE and parent == NONE:
            return ()  # the end marker after a function
        first = self._loc(file_idx, line, function)
        if first is None:
            return None
        if parent == NONE or parent >= self._nlocs:
            return (first,)
        rest = self._suffixes.get(parent)
        if rest is None:
            rest = self._chain_from(parent)
            if rest is None:
                return None
        return (first, *rest)

    def _chain_from(self, at: int) -> tuple[Loc, ...] | None:
        """The chain starting at location `at` (memoized when complete); None as `_walk` says."""
        start = at
        out = []
        locs = self._locs
        while at != NONE and at < self._nlocs:
            if len(out) >= _MAX_DEPTH - 1:
                self.trusted = False
                return None
            base = at * _LOCATION_WORDS
            loc = self._loc(locs[base], locs[base + 1], locs[base + 2])
            if loc is None:
                return None
            out.append(loc)
            at = locs[base + 3]
        found = tuple(out)
        if len(self._suffixes) >= _SUFFIX_LIMIT:
            self._suffixes.clear()
        self._suffixes[start] = found
        return found

    def _loc(self, file_idx: int, line: int, function: int) -> Loc | None:
        """One location from its fields; None when its file or language has not been learned yet."""
        path = self._paths.get(file_idx if file_idx < self._files else NONE)
        if function < self._nfunctions:
            f = function * _FUNCTION_WORDS
            functions = self._functions
            entry, lang_code = functions[f + 2], functions[f + 3]
            name = self._name(functions[f])
        else:
            entry, lang_code, name = NONE, 0, "?"
        lang = self._langs.get(lang_code)
        if path is None or lang is None:
            return None
        return Loc(entry, line, lang, name, path)

    def _learn(self, index: int, rel: int) -> tuple[Loc, ...] | None:
        """Ask symbolic for `rel`, learn the chain's file paths and languages, and check the rest."""
        try:
            truth = symcache_lookup(self._cache, rel)
        except (SymbolicError, RuntimeError):
            return None
        locs, functions = self._locs, self._functions
        at = self._loc_start + index
        for loc in truth:
            if at == NONE or at >= len(locs) // _LOCATION_WORDS:
                self.trusted = False
                return truth
            base = at * _LOCATION_WORDS
            file_idx, function = locs[base], locs[base + 2]
            if file_idx < self._files:
                self._paths.setdefault(file_idx, loc.full_path)
            if function < len(functions) // _FUNCTION_WORDS:
                self._langs.setdefault(functions[function * _FUNCTION_WORDS + 3], loc.lang)
            else:
                self._langs.setdefault(0, loc.lang)
            at = locs[base + 3]
        if self._walk(index) != truth:
            self.trusted = False
        return truth

    def _name(self, offset: int) -> str:
        found = self._names.get(offset)
        if found is None:
            found = self._names[offset] = _read_string(self._strings, offset)
        return found


def make_reader(cache: SymCache, data: bytes | memoryview | None = None) -> SymcacheReader | None:
    """A reader over `cache` (its bytes given, or read through its buffer); None when not format 9 or
    when its layout, or its answers on sampled ranges, don't agree with symbolic's."""
    try:
        if data is None:
            size = cache._methodcall(lib.symbolic_symcache_get_size)
            data = ffi.buffer(cache._methodcall(lib.symbolic_symcache_get_bytes), size)
        view = memoryview(data).cast("B")
    except (SymbolicError, RuntimeError, TypeError, ValueError):
        return None
    layout = _layout(view)
    if layout is None:
        return None
    reader = SymcacheReader(cache, view, layout)
    if not _increasing(reader.starts):  # SymCache bisects distinct starts
        return None
    step = max(1, len(reader.starts) // _SELF_CHECKS)
    for index in range(0, len(reader.starts), step):
        rel = reader.starts[index]
        if reader.chain(index, rel) is None or not reader.trusted:
            return None
        if reader._walk(index) != symcache_lookup(cache, rel):
            return None
    return reader


def _increasing(starts: array) -> bool:
    """Whether `starts` is strictly increasing (numpy's pass when it is there: a large cache has a
    million ranges)."""
    if np is not None and len(starts) > 1:
        values = np.frombuffer(starts, dtype=np.uint32)
        return bool((values[1:] > values[:-1]).all())
    return all(map(operator.lt, starts, islice(starts, 1, None)))


def _layout(view: memoryview) -> _Layout | None:
    """The arrays' places from a SymCache header; None when not format 9 or past the end of `view`."""
    if len(view) < _HEADER_END:
        return None
    magic, version = _PREAMBLE.unpack_from(view, 0)
    if magic != b"SYMC" or version != SUPPORTED_VERSION:
        return None
    _arch, files, functions, locations, ranges, string_bytes = _COUNTS.unpack_from(view, _COUNTS_AT)
    if ranges > locations:
        return None
    files_at = _align(_HEADER_END)
    functions_at = _align(files_at + 4 * _FILE_WORDS * files)
    locations_at = _align(functions_at + 4 * _FUNCTION_WORDS * functions)
    ranges_at = _align(locations_at + 4 * _LOCATION_WORDS * locations)
    strings_at = _align(ranges_at + 4 * ranges)
    if strings_at + string_bytes > len(view):
        return None
    return _Layout(
        functions_at, locations_at, ranges_at, strings_at, files, functions, locations, ranges, string_bytes
    )


def _read_string(strings: memoryview, offset: int) -> str:
    """A LEB128-length-prefixed string of the table; "?" (symbolic's name for none) when invalid."""
    if offset == NONE or offset >= len(strings):
        return "?"
    length = strings[offset]
    if length < 0x80 and offset + 1 + length <= len(strings):  # a one-byte length: most names
        try:
            return str(strings[offset + 1 : offset + 1 + length], "utf-8")
        except UnicodeDecodeError:
            return "?"
    length = shift = 0
    pos = offset
    while pos < len(strings):
        byte = strings[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    else:
        return "?"
    if pos + length > len(strings):
        return "?"
    try:
        return bytes(strings[pos : pos + length]).decode("utf-8")
    except UnicodeDecodeError:
        return "?"


def symcache_lookup(cache: SymCache, rel: int) -> tuple[Loc, ...]:
    """`cache.lookup(rel)` (innermost first) without symbolic's per-location objects: the same FFI
    call, strings decoded as symbolic decodes them, the result freed as symbolic frees it."""
    result = rustcall(lib.symbolic_symcache_lookup, cache._get_objptr(), rel)
    try:
        items = result.items
        return tuple(
            Loc(item.sym_addr, item.line, _text(item.lang), _text(item.symbol), _owned_text(item.full_path))
            for item in (items[i] for i in range(result.len))
        )
    finally:
        rustcall(lib.symbolic_lookup_result_free, ffi.addressof(result))


def _text(value: ffi.CData) -> str:
    return ffi.unpack(value.data, value.len).decode("utf-8", "replace") if value.len else ""


def _owned_text(value: ffi.CData) -> str:
    try:
        return _text(value)
    finally:
        if value.owned:
            lib.symbolic_str_free(ffi.addressof(value))


def _align(value: int) -> int:
    return (value + 7) & ~7
