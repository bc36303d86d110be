"""Batched lookups of many addresses of one file, for central symbolization: the answers of
`FileSymbols.resolve`, with the per-address work done once per batch or once per range.

The binary searches (SymCache range, containing symbol, executable section, compile unit) run over the
whole batch at once (numpy `searchsorted`), and so does the reading of each range's own location. Then,
in the first SymCache: an address at a symbol-only location (a symbol table's function, no file, line
or inline caller) outside compile units gets the one frame of its sized symbol, named once per symbol
(from the bundle's precomputed names when it has them, `outer_names`); an address at a DWARF location
gets its frames from memos by (function, containing symbol, unit) and by first inline caller, its own
file and line added. The rest (a file or language not learned yet, a cover to check, other parts) costs
a dictionary lookup by (part, range, containing symbol, unit): frames are a function of those, so each
is built once, from the SymCache's location indices (no per-location objects) through the scalar path's
own naming code (`FileSymbols.name_fields`). Anything unusual (Go tables, a SymCache the direct reader
can't read, an address no SymCache range answers, PLT stubs) goes through `FileSymbols.resolve` itself.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from fleetprof.symbolize.lookup import _BARE_NAME, FileSymbols, NativeFrame
from fleetprof.symbolize.outer_names import OuterNames, outer_name
from fleetprof.symbolize.symcache_reader import NONE, SymcacheReader

try:
    import numpy as np
except ImportError:  # without numpy every address takes the scalar path
    np = None

# One frame's fields, in NativeFrame's order: function, system_name, file, line, inlined, start_line.
Record = tuple[str, str, str, int, bool, int]
_MEMO_LIMIT = 1 << 16  # memoized ranges, groups and names; each memo restarts when full
_HIGHEST = 1 << 63  # addresses at or past this (or negative) take the scalar path
_OUTSIDE = -2  # an address outside a part's 32-bit relative range
_CONTAINING_BACK = 8  # as `CodeExtents.containing_index`
_UNIT_BACK = 4  # as `UnitLines._unit_offset`


def records(frames: tuple[NativeFrame, ...] | None) -> tuple[Record, ...] | None:
    """The records of frames from the scalar path."""
    if frames is None:
        return None
    return tuple((f.function, f.system_name, f.file, f.line, f.inlined, f.start_line) for f in frames)


class BatchLookup:
    """Answers many addresses of one `FileSymbols` at once; its memos are dropped by `forget`."""

    __slots__ = ("_arrays", "_callers", "_display", "_groups", "_names", "_outer", "_symbols", "_units")

    def __init__(self, symbols: FileSymbols, display: OuterNames | None = None) -> None:
        """`display`, when given, has `outer_names.outer_name` of each symbol of the extents precomputed,
        as a bundle carries them."""
        self._symbols = symbols
        self._display = display
        self._outer: dict[int, tuple[Record, ...]] = {}  # a plain address's answer by its symbol, () none
        self._arrays: tuple | None = None  # numpy views of the tables searched, made on first use
        self._callers: dict[tuple[int, int, int, int], tuple[tuple[Record, ...], object]] = {}  # and cover
        self._groups: dict[tuple[int, int, int, int], tuple[tuple[Record, ...], object]] = {}  # and cover
        self._names: dict[tuple, tuple[str, str, int]] = {}  # one location's naming, by what decides it
        self._units: tuple | None = None  # numpy columns of the compile units' ranges, made on first use

    def forget(self) -> None:
        """Drop memoized ranges, groups and names (memory only)."""
        self._callers.clear()
        self._groups.clear()
        self._names.clear()
        self._outer.clear()

    def resolve(self, addrs: Sequence[int]) -> list[tuple[Record, ...] | None]:
        """Records (outermost first) per address, as `FileSymbols.resolve` gives them; None when the
        file's symbols don't know the address."""
        symbols = self._symbols
        if not addrs:
            return []
        readers = [part.reader for part in symbols.parts]
        if (
            np is None
            or symbols.go is not None
            or not readers
            or not all(r is not None and r.trusted for r in readers)
            or min(addrs) < 0
            or max(addrs) >= _HIGHEST
        ):
            if readers and not all(r is not None and r.trusted for r in readers):
                self.forget()
            return [records(symbols.resolve(a)) for a in addrs]
        return self._batch(addrs)

    def _batch(self, addrs: Sequence[int]) -> list[tuple[Record, ...] | None]:
        symbols = self._symbols
        arrays = self._tables()
        wanted = np.array(addrs, dtype=np.int64)
        containing_np = _back_search(arrays[0], arrays[1], wanted, _CONTAINING_BACK)
        sections_np = _sections(arrays[2], arrays[3], wanted) if symbols.extents.sections else None
        unit_ranges = self._unit_tables()
        if unit_ranges is not None:
            units_np = _back_search(*unit_ranges[:2], wanted, _UNIT_BACK, unit_ranges[2])
        else:
            units_np = np.full(len(addrs), -1, dtype=np.int64)
        indexes_np = []
        for part, starts in zip(symbols.parts, arrays[4], strict=True):
            rel = wanted - part.load_address
            found = np.searchsorted(starts, rel, side="right").astype(np.int64) - 1
            found[(rel < 0) | (rel > 0xFFFFFFFF)] = _OUTSIDE
            indexes_np.append(found)
        words_np = [self._words(p, index) for p, index in enumerate(indexes_np)]
        plain = self._plain(wanted, containing_np, units_np, sections_np, indexes_np[0], words_np[0])
        if plain is None:  # a reader stopped being trusted while languages were learned
            self.forget()
            return [records(symbols.resolve(a)) for a in addrs]
        out, answered = plain
        slow = self._lined(out, answered, addrs, containing_np, units_np, indexes_np[0], words_np[0])
        if not slow:
            return out
        # The general loop, over the rest: their columns at position k (the address's own is j).
        at = np.array(slow, dtype=np.int64)
        containing, units = containing_np[at].tolist(), units_np[at].tolist()
        sections = sections_np[at].tolist() if sections_np is not None else None
        indexes = [index[at].tolist() for index in indexes_np]
        words = [tuple(w[at, col].tolist() for col in range(4)) for w in words_np]
        groups = self._groups
        first = indexes[0]
        for k, j in enumerate(slow):
            addr = addrs[j]
            c, u = containing[k], units[k]
            group = groups.get((0, first[k], c, u))
            if group is not None and (group[1] is None or _covers(group[1], addr, sections, k)):
                out[j] = group[0]
                continue
            for p, part_indexes in enumerate(indexes):
                index = part_indexes[k]
                if index < 0:
                    continue
                if p:  # the first part's group was asked for above
                    group = groups.get((p, index, c, u))
                if group is not None:
                    if group[1] is not None and not _covers(group[1], addr, sections, k):
                        continue
                    out[j] = group[0]
                    break
                found_records = self._miss(p, index, addr, c, u, sections, k, words[p])
                if found_records is None:
                    continue
                if found_records is False:  # symbolic's answer, which may have turned the reader off
                    out[j] = records(symbols.resolve(addr))
                    if not all(part.reader.trusted for part in symbols.parts):  # type: ignore[union-attr]
                        self.forget()  # as the scalar path forgets what a reader it stops trusting said
                        for rest in slow[k + 1 :]:
                            out[rest] = records(symbols.resolve(addrs[rest]))
                        return out
                else:
                    out[j] = found_records
                break
            else:
                out[j] = records(symbols.resolve(addr))  # no range: a PLT stub, or nothing
        return out

    def _plain(
        self,
        wanted: np.ndarray,
        containing: np.ndarray,
        units: np.ndarray,
        sections: np.ndarray | None,
        index: np.ndarray,
        words: np.ndarray,
    ) -> tuple[list[tuple[Record, ...] | None], np.ndarray] | None:
        """(answers, which addresses they answer): the first part's plain addresses answered at once.
        Plain: a symbol-only location (no file, line or inline caller, as a symbol table gives) inside
        the sized symbol `containing`, outside any compile unit when start lines are wanted, so its one
        frame is a function of that symbol alone (`_outer`). None when the first part's reader stopped
        being trusted while its languages were learned."""
        symbols = self._symbols
        reader: SymcacheReader = symbols.parts[0].reader  # type: ignore[assignment]
        file_idx, line, function, parent = words[:, 0], words[:, 1], words[:, 2], words[:, 3]
        candidate = (
            (index >= 0)
            & (containing >= 0)
            & (line == 0)
            & (file_idx >= reader.file_count)
            & (function < reader.function_count)
            & ((parent == NONE) | (parent >= reader.locations))
        )
        if symbols.want_start_lines:
            candidate &= units == -1
        out: list[tuple[Record, ...] | None] = [None] * len(wanted)
        picked = np.flatnonzero(candidate)
        if len(picked):
            functions = self._tables()[6][0]
            codes = functions[function[picked], 3]
            lowest, highest = int(codes.min()), int(codes.max())
            distinct = [lowest] if lowest == highest else np.unique(codes).tolist()  # one, mostly
            if not self._learn_languages(distinct, codes, picked, index, wanted):
                return None
            unknown = [code for code in distinct if reader.language(code) == "unknown"]
            if unknown != distinct:
                picked = picked[np.isin(codes, unknown)]
            picked = picked[
                self._symbol_covers(wanted[picked], functions[function[picked], 2], sections, picked)
            ]
        answered = np.zeros(len(wanted), dtype=bool)
        if not len(picked):
            return out, answered
        symbols_of = containing[picked].tolist()
        outer = self._outer
        get = outer.get
        found = [get(c) for c in symbols_of]
        if None in found:
            missing = {c for c, answer in zip(symbols_of, found, strict=True) if answer is None}
            if len(outer) + len(missing) > _MEMO_LIMIT:  # the memo restarts: this batch's symbols named anew
                outer.clear()
                missing = set(symbols_of)
            self._name_symbols(sorted(missing))  # in address order: their names are read in file order
            found = [get(c) for c in symbols_of]
        if () in found:  # a nameless symbol: the general loop
            found = [answer or None for answer in found]
        if len(picked) == len(wanted):
            out = found
        else:
            for j, answer in zip(picked.tolist(), found, strict=True):
                out[j] = answer
        answered[picked] = np.array([answer is not None for answer in found], dtype=bool)
        return out, answered

    def _lined(
        self,
        out: list[tuple[Record, ...] | None],
        answered: np.ndarray,
        addrs: Sequence[int],
        containing: np.ndarray,
        units: np.ndarray,
        index: np.ndarray,
        words: np.ndarray,
    ) -> list[int]:
        """Answer in `out` the first part's addresses whose location is not symbol-only: `_miss` without
        its range memo (the outermost frame named by function, symbol and unit; inline callers shared by
        their first caller) for the addresses whose files and languages are learned and whose frames
        need no cover check; the positions left to the general loop."""
        reader: SymcacheReader = self._symbols.parts[0].reader  # type: ignore[assignment]
        file_idx, line, function, parent = words[:, 0], words[:, 1], words[:, 2], words[:, 3]
        at = np.flatnonzero(~answered & (index >= 0) & (function < reader.function_count))
        if not len(at):
            return np.flatnonzero(~answered).tolist()
        names, callers_of, groups = self._names, self._callers, self._groups
        known_path, known_function, locations = reader.known_path, reader.known_function, reader.locations
        columns = (index[at], file_idx[at], line[at], function[at], parent[at], containing[at], units[at])
        for j, k, file, number, fn, up, c, u in zip(
            at.tolist(), *(col.tolist() for col in columns), strict=True
        ):
            group = groups.get((0, k, c, u))
            if group is not None:
                if group[1] is None:
                    out[j] = group[0]
                continue  # a cover to check: the general loop does
            path = known_path(file)
            named = known_function(fn) if path is not None else None
            if named is None:  # a file or language not learned yet: the general loop learns it
                continue
            sym_addr, lang, symbol = named
            fields = (fn, sym_addr, number, lang, symbol, path)
            shared = True
            if up == NONE or up >= locations:
                if not number and not path and lang == "unknown":  # symbol-only: its cover decides
                    continue
                name = names.get((0, fn, True, c, u, -1))
                if name is None:
                    own, shared = self._record(0, fields, addrs[j], c, u, True)
                    found: tuple[Record, ...] = (own,)
                else:
                    found = ((name[0], name[1], path, number, False, name[2]),)
            else:
                held = callers_of.get((0, up, c, u))
                if held is None:
                    chain = reader.caller_indices(up)
                    if chain is None:
                        continue
                    held, shared = self._caller_records(0, chain, addrs[j], c, u)
                callers, cover = held
                if cover is not None:  # a symbol-only outermost caller: its cover decides
                    continue
                placed = number if lang == "cpp" and _BARE_NAME.match(symbol) else -1
                name = names.get((0, fn, False, -2, u, placed))
                if name is None:
                    own, own_shared = self._record(0, fields, addrs[j], c, u, False)
                    shared = shared and own_shared
                else:
                    own = (name[0], name[1], path, number, True, name[2])
                found = (*callers, own)
            out[j] = found
            if shared:
                _remember(groups, (0, k, c, u), (found, None))
        return [j for j, answer in enumerate(out) if answer is None]

    def _learn_languages(
        self,
        distinct: list[int],
        codes: np.ndarray,
        picked: np.ndarray,
        index: np.ndarray,
        wanted: np.ndarray,
    ) -> bool:
        """Learn the first part's languages `distinct` (of `codes`, those of the addresses `picked`) not
        known yet: symbolic's answer for one address of each teaches it. False when that turned the
        reader off."""
        reader: SymcacheReader = self._symbols.parts[0].reader  # type: ignore[assignment]
        load = self._symbols.parts[0].load_address
        for code in distinct:
            if reader.language(code) is None:
                j = int(picked[int(np.argmax(codes == code))])
                reader.chain(int(index[j]), int(wanted[j]) - load)
                if not reader.trusted:
                    return False
        return True

    def _symbol_covers(
        self, addrs: np.ndarray, sym_addrs: np.ndarray, sections: np.ndarray | None, picked: np.ndarray
    ) -> np.ndarray:
        """Per address, whether the first part's symbol-only function entered at `sym_addrs` plausibly
        holds it: `_cover` then `_covers`, for many at once."""
        if sections is None:
            return np.ones(len(addrs), dtype=bool)
        arrays = self._tables()
        starts, sizes = arrays[0], arrays[1]
        sym_start = sym_addrs.astype(np.int64) + self._symbols.parts[0].load_address
        at = np.searchsorted(starts, sym_start, side="left")
        safe = np.minimum(at, len(starts) - 1)
        sized = (at < len(starts)) & (starts[safe] == sym_start) & (sizes[safe] != 0)
        section = sections[picked]
        same = _sections(arrays[2], arrays[3], sym_start) == section
        return (section >= 0) & np.where(sized, addrs < sym_start + sizes[safe], same)

    def _name_symbols(self, symbols: list[int]) -> None:
        """Memoize the one-frame answer of plain addresses in each of `symbols` (`_record` of an
        outermost symbol-only location outside compile units, which reads only the symbol): the symbol's
        name without its version, shown as `outer_names.outer_name` says; () when nothing is left of it."""
        extents = self._symbols.extents
        names, offsets = extents.names, extents.name_offsets
        outer = self._outer
        try:  # every name ends at a NUL (as `CodeExtents` writes them) and is UTF-8, mostly
            if not names.endswith(b"\0"):
                raise ValueError("an unterminated name")
            find = names.find
            raws = [names[at : find(b"\0", at)].decode() for at in map(offsets.__getitem__, symbols)]
        except ValueError:  # UnicodeDecodeError included
            raws = [extents.name_at(c) for c in symbols]
        shown_names = self._display.names(symbols) if self._display is not None else [None] * len(symbols)
        for c, raw, shown in zip(symbols, raws, shown_names, strict=True):
            if "@" in raw:
                raw = raw.partition("@")[0]
            if shown is None:
                shown = raw if self._display is not None else outer_name(raw)
            outer[c] = ((shown, raw if raw != shown else "", "", 0, False, 0),) if shown else ()

    def _miss(
        self,
        p: int,
        index: int,
        addr: int,
        c: int,
        u: int,
        sections: list[int] | None,
        j: int,
        words: tuple[list[int], ...],
    ) -> tuple[Record, ...] | bool | None:
        """Records of range `index` of part `p` for `addr`, memoized by (part, range, containing symbol,
        unit) unless a name holds the address; None when the range has no locations or its symbol
        doesn't cover `addr`; False when the reader can't read the range (symbolic's path then).
        `words` are the range's own location's fields, read for the whole batch."""
        part = self._symbols.parts[p]
        reader: SymcacheReader = part.reader  # type: ignore[assignment]
        file_idx, line, function, parent = words[0][j], words[1][j], words[2][j], words[3][j]
        path = reader.known_path(file_idx) if reader.trusted and function != NONE else None
        named = reader.known_function(function) if path is not None else None
        if named is None:  # an end marker, or a file or language not learned yet: the general way
            return self._miss_read(p, index, addr, c, u, sections, j)
        sym_addr, lang, symbol = named
        inner = (function, sym_addr, line, lang, symbol, path)
        shared = True
        if parent == NONE or parent >= reader.locations:
            callers: tuple[Record, ...] = ()
            cover = self._cover(inner, part.load_address)
        else:
            held = self._callers.get((p, parent, c, u))
            if held is None:
                chain = reader.caller_indices(parent)
                if chain is None:
                    return self._miss_read(p, index, addr, c, u, sections, j)
                held, shared = self._caller_records(p, chain, addr, c, u)
            callers, cover = held
        if cover is not None and not _covers(cover, addr, sections, j):
            return None
        outermost = not callers
        placed = line if not outermost and lang == "cpp" and _BARE_NAME.match(symbol) else -1
        named = self._names.get((p, function, outermost, c if outermost else -2, u, placed))
        if named is not None:  # `_record`, inline: most ranges are new lines of known functions
            own: Record = (named[0], named[1], path, line, not outermost, named[2])
            own_shared = True
        else:
            own, own_shared = self._record(p, inner, addr, c, u, outermost)
        found = (*callers, own)
        if shared and own_shared:
            groups = self._groups
            if len(groups) >= _MEMO_LIMIT:
                groups.clear()
            groups[p, index, c, u] = (found, cover)
        return found

    def _miss_read(
        self, p: int, index: int, addr: int, c: int, u: int, sections: list[int] | None, j: int
    ) -> tuple[Record, ...] | bool | None:
        """`_miss` with the range's chain read (and its files and languages learned) by the reader."""
        part = self._symbols.parts[p]
        reader: SymcacheReader = part.reader  # type: ignore[assignment]
        chain = reader.chain_indices(index, addr - part.load_address)
        if chain is None:
            return False
        if not chain:
            return None
        inner = reader.location(chain[0])
        shared = True
        if len(chain) == 1:
            callers: tuple[Record, ...] = ()
            cover = self._cover(inner, part.load_address)
        else:
            held = self._callers.get((p, chain[1], c, u))
            if held is None:
                held, shared = self._caller_records(p, chain[1:], addr, c, u)
            callers, cover = held
        if cover is not None and not _covers(cover, addr, sections, j):
            return None
        own, own_shared = self._record(p, inner, addr, c, u, len(chain) == 1)
        found = (*callers, own)
        if shared and own_shared:
            _remember(self._groups, (p, index, c, u), (found, cover))
        return found

    def _caller_records(
        self, p: int, chain: tuple[int, ...], addr: int, c: int, u: int
    ) -> tuple[tuple[tuple[Record, ...], object], bool]:
        """((records of the inline callers `chain` (innermost first) outermost first, the outermost's
        cover limits), whether they may be shared), memoized by the first caller when shareable."""
        part = self._symbols.parts[p]
        reader: SymcacheReader = part.reader  # type: ignore[assignment]
        locations = [reader.location(at) for at in reversed(chain)]
        callers, shared = self._records(p, locations, addr, c, u)
        held = (callers, self._cover(locations[0], part.load_address))
        if shared:
            _remember(self._callers, (p, chain[0], c, u), held)
        return held, shared

    def _records(
        self, p: int, locations: list[tuple[int, int, int, str, str, str]], addr: int, c: int, u: int
    ) -> tuple[tuple[Record, ...], bool]:
        """Records of inline callers (outermost first) and whether no name among them holds `addr`."""
        out = []
        shared = outermost = True
        for fields in locations:
            record, ok = self._record(p, fields, addr, c, u, outermost)
            out.append(record)
            shared = shared and ok
            outermost = False
        return tuple(out), shared

    def _record(
        self, p: int, fields: tuple[int, int, int, str, str, str], addr: int, c: int, u: int, outermost: bool
    ) -> tuple[Record, bool]:
        """One location's record, and whether it may be shared (its name doesn't hold `addr`). Naming
        is memoized by what `name_fields` reads: function, depth, containing symbol, unit and, for a
        bare C++ inline name (placed by its line), the line."""
        function, sym_addr, line, lang, symbol, path = fields
        placed = line if not outermost and lang == "cpp" and _BARE_NAME.match(symbol) else -1
        name_key = (p, function, outermost, c if outermost else -2, u, placed)
        names = self._names
        named = names.get(name_key)
        shared = True
        if named is None:
            load = self._symbols.parts[p].load_address
            named = self._symbols.name_fields(addr, symbol, sym_addr, lang, line, load, c, outermost, u != -1)
            if named[0].endswith(f"+0x{addr:x}"):
                shared = False
            else:
                _remember(names, name_key, named)
        return (named[0], named[1], path, line, not outermost, named[2]), shared

    def _cover(self, fields: tuple[int, int, int, str, str, str], load: int) -> tuple[int, int] | bool | None:
        """None for a location with DWARF; for a symbol-only one what `CodeExtents.covers(sym_start,
        addr)` compares `addr` with: (end, -1) for a sized symbol, (-1, the symbol's section) otherwise;
        True when the file has no section table."""
        _function, sym_addr, line, lang, _symbol, path = fields
        if not (lang == "unknown" and not path and not line):
            return None
        extents = self._symbols.extents
        if not extents.sections:
            return True
        sym_start = sym_addr + load
        idx = bisect.bisect_left(extents.starts, sym_start)
        if idx < len(extents.starts) and extents.starts[idx] == sym_start and extents.sizes[idx]:
            return (sym_start + extents.sizes[idx], -1)
        return (-1, extents.section_of(sym_start))

    def _words(self, p: int, indexes: np.ndarray) -> np.ndarray:
        """(file, line, function, parent) of each address's range location in part `p` (one row each),
        all NONE where there is none (outside the part, before its first range, past its locations)."""
        reader: SymcacheReader = self._symbols.parts[p].reader  # type: ignore[assignment]
        table = self._tables()[5][p]
        at = indexes + reader.first_location
        inside = (indexes >= 0) & (at < len(table))
        picked = table[np.where(inside, at, 0)] if len(table) else np.zeros((len(at), 4), dtype=np.uint32)
        picked[~inside] = NONE
        return picked

    def _unit_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """numpy columns (starts, ends, unit offsets) of the compile-unit ranges; None without any."""
        if self._units is None:
            lines = self._symbols._line_source()
            ranges = lines.ranges() if lines is not None else None
            if ranges is None:
                return None
            self._units = tuple(
                np.array([min(r[i], _HIGHEST - 1) for r in ranges], dtype=np.int64) for i in range(3)
            )
        return self._units if len(self._units[0]) else None

    def _tables(self) -> tuple:
        """numpy views of the symbol starts and sizes, section bounds, and each part's range starts,
        location words and function words."""
        if self._arrays is None:
            extents = self._symbols.extents
            self._arrays = (
                _signed(_view(extents.starts, np.uint64)),
                _signed(_view(extents.sizes, np.uint64)),
                np.array([s for s, _ in extents.sections], dtype=np.int64),
                np.array([e for _, e in extents.sections], dtype=np.int64),
                [
                    _view(part.reader.starts, np.uint32).astype(np.int64)  # type: ignore[union-attr]
                    for part in self._symbols.parts
                ],
                [
                    _view(part.reader.location_words, np.uint32).reshape(-1, 4)  # type: ignore[union-attr]
                    for part in self._symbols.parts
                ],
                [
                    _view(part.reader.function_words, np.uint32).reshape(-1, 4)  # type: ignore[union-attr]
                    for part in self._symbols.parts
                ],
            )
        return self._arrays


def _remember(memo: dict, key: object, value: object) -> None:
    """`memo[key] = value`, the memo restarted when full."""
    if len(memo) >= _MEMO_LIMIT:
        memo.clear()
    memo[key] = value


def _covers(cover: tuple[int, int] | bool, addr: int, sections: list[int] | None, j: int) -> bool:
    """`CodeExtents.covers` for a symbol-only range, from its precomputed limits."""
    if cover is True or sections is None:
        return True
    section = sections[j]
    if section < 0:
        return False
    end, sym_section = cover
    return addr < end if end >= 0 else sym_section == section


def _view(values: object, dtype: object) -> np.ndarray:
    """A numpy view of an `array.array` (an empty array when it is empty)."""
    return np.frombuffer(values, dtype=dtype) if len(values) else np.zeros(0, dtype=dtype)  # type: ignore[arg-type]


def _signed(values: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit values as signed ones, the few past 2**63 - 1 held there (no address reaches it)."""
    return np.minimum(values, np.uint64(_HIGHEST - 1)).astype(np.int64)


def _back_search(
    starts: np.ndarray, sizes: np.ndarray, addrs: np.ndarray, back: int, values: np.ndarray | None = None
) -> np.ndarray:
    """Per address, the position (or `values` there) of the last of the `back` entries starting at or
    before it whose extent holds it, nearest first; -1 when none does. `sizes` are the entries' sizes
    (or, with `values`, their ends)."""
    out = np.full(len(addrs), -1, dtype=np.int64)
    if not len(starts):
        return out
    top = np.searchsorted(starts, addrs, side="right").astype(np.int64) - 1
    pending = np.arange(len(addrs))  # positions not answered yet: fewer at each step back
    for k in range(back):
        at = top[pending] - k
        wanted = addrs[pending]
        ok = at >= 0
        safe = np.where(ok, at, 0)
        inside = wanted - starts[safe] < sizes[safe] if values is None else wanted < sizes[safe]
        hit = ok & inside
        out[pending[hit]] = at[hit] if values is None else values[safe[hit]]
        pending = pending[ok & ~hit]
        if not len(pending):
            break
    return out


def _sections(starts: np.ndarray, ends: np.ndarray, addrs: np.ndarray) -> np.ndarray:
    """Per address, the index of the executable section holding it, -1 when none does."""
    if not len(starts):
        return np.full(len(addrs), -1, dtype=np.int64)
    at = np.searchsorted(starts, addrs, side="right").astype(np.int64) - 1
    safe = np.where(at >= 0, at, 0)
    return np.where((at >= 0) & (addrs < ends[safe]), at, -1)
