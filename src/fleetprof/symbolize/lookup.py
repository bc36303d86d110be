"""Address -> native frames over one file's symbol data, shared by host and central symbolization.

`FileSymbols` holds what a lookup reads: SymCaches (with the ELF load address each is relative to),
code extents, PLT stub names and start lines/scopes. `NativeSymbolizer` fills it from the file and its
debug file; `CentralSymbolizer` from an uploaded symbol bundle. Both then answer through `lookup`,
so the two paths give the same frames. The corrections to SymCache's answers are described in
symbolize/README.md.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from symbolic import SymCache
from symbolic.exceptions import SymbolicError

from fleetprof.symbolize.demangle import demangle
from fleetprof.symbolize.extents import CodeExtents
from fleetprof.symbolize.plt import PltNames
from fleetprof.symbolize.symcache_reader import Loc, SymcacheReader, symcache_lookup

# GCC clone suffixes (foo.constprop.0, foo.isra.0, foo.part.1, foo.cold): DWARF and addr2line call it foo.
_CLONE_SUFFIX = re.compile(r"(\.(cold|constprop|isra|part|lto_priv|localalias)(\.\d+)?)+$")
# A bare DW_AT_name (no scope, no parameters, not mangled): SymCache's name for a C++ function without
# DW_AT_linkage_name (GCC omits it for internal linkage: statics, anonymous namespaces).
_BARE_NAME = re.compile(r"^(?!_Z)[^:(]+$|^operator\(\)$")
_INLINE_ENTRY = 0xFFFFFFFF  # SymCache's entry address for inlined frames
_NO_RANGE = -1
_MEMO_LIMIT = 1 << 16  # memoized chains and frames per file; each memo restarts when full
_UNSET = object()


@dataclass(frozen=True, slots=True)
class NativeFrame:
    """One symbolized native frame (an inlined function is its own frame)."""

    function: str  # demangled name, or `module+0xADDR` when unknown
    system_name: str = ""  # mangled name when it differs from `function`
    file: str = ""  # source file from DWARF, "" when unknown
    line: int = 0  # source line, 0 when unknown
    inlined: bool = False  # True for every frame but the outermost (the real call frame)
    start_line: int = 0  # DW_AT_decl_line of the function, 0 when unknown


def fallback_frame(module: str, addr: int) -> NativeFrame:
    """The frame for an address that can't be symbolized: `libfoo.so+0x1a2b`."""
    return NativeFrame(function=f"{module}+0x{addr:x}")


class LineSource(Protocol):
    """Start lines (DW_AT_decl_line) and scopes of bare inline names: `startline.UnitLines`."""

    def start_line(self, addr: int, name: str, entry: int | None) -> int:
        """Decl line of `name` at `addr`, 0 when unknown."""
        ...

    def qualified_name(self, addr: int, name: str, line: int) -> tuple[str, int] | None:
        """(`ns::Class::name`, decl line) for a bare inline name, None when unknown."""
        ...

    def unit_key(self, addr: int) -> int | None:
        """Which compile unit answers for `addr` (None: none)."""
        ...

    def ranges(self) -> list[tuple[int, int, int]] | None:
        """The compile units' (start, end, unit offset) ranges, sorted, as `unit_key` searches them."""
        ...

    def close(self) -> None:
        """Release what backs the source."""
        ...


class FrameSource(Protocol):
    """Frames from a table of the file's own, asked before SymCache: `golang.GoSymbols` (pclntab)."""

    def lookup(self, addr: int) -> tuple[NativeFrame, ...] | None:
        """Frames for `addr`, outermost first; None when the table doesn't hold it."""
        ...

    def close(self) -> None:
        """Release what backs the table."""
        ...


@dataclass(slots=True)
class Part:
    """One SymCache and the ELF load address its addresses are relative to."""

    load_address: int
    cache: SymCache
    reader: SymcacheReader | None = None  # direct reads of the cache's arrays, when its format allows
    chains: dict[int, tuple[Loc, ...]] = field(default_factory=dict)  # range index -> locations


@dataclass(slots=True)
class FileSymbols:
    """Everything a lookup reads for one file; `lookup(addr)` gives its frames, outermost first."""

    module: str
    parts: list[Part]
    extents: CodeExtents
    open_lines: Callable[[], LineSource | None] = lambda: None  # start lines, opened on first use
    open_plt: Callable[[], PltNames] = PltNames  # PLT stub names, read on first use
    want_start_lines: bool = True
    stats: Counter[str] = field(default_factory=Counter)
    go: FrameSource | None = None  # a Go binary's pclntab: names, lines and inlining, even when stripped
    _lines: LineSource | None = None
    _lines_opened: bool = False
    _plt: PltNames | None = None
    _names: dict[str, str] = field(default_factory=dict)  # raw symbol -> demangled
    _frames: dict[tuple, tuple[NativeFrame, ...]] = field(default_factory=dict)
    _loc_frames: dict[tuple, NativeFrame] = field(default_factory=dict)  # one location's frame
    _addressed: NativeFrame | None = None  # set by `_make_frames` when a frame's name holds the address

    def lookup(self, addr: int) -> tuple[NativeFrame, ...]:
        """Frames for ELF address `addr`, outermost first; a `module+0xADDR` frame when unknown."""
        return self.resolve(addr) or (fallback_frame(self.module, addr),)

    def resolve(self, addr: int) -> tuple[NativeFrame, ...] | None:
        """Frames for ELF address `addr`, outermost first; None when the file's symbols don't know it."""
        if self.go is not None:  # Go functions: the pclntab has lines and inlining even when stripped
            found = self.go.lookup(addr)
            if found is not None:
                self.stats["native.go_addresses"] += 1
                return found
        extents = self.extents
        for index, part in enumerate(self.parts):
            load = part.load_address
            rel = addr - load
            if not 0 <= rel <= 0xFFFFFFFF:
                continue
            found = self._locations(part, rel)
            if found is None:
                continue
            key, locs = found
            outer = locs[-1]
            symbol_only = outer.lang == "unknown" and not outer.full_path and not outer.line
            if symbol_only and not extents.covers(outer.sym_addr + load, addr):
                continue
            containing = extents.containing_index(addr)
            if key == _NO_RANGE:
                return self._make_frames(addr, locs, load, containing)
            if symbol_only and self.want_start_lines:  # a symbol's range may span compile units
                lines = self._line_source()
                unit = lines.unit_key(addr) if lines is not None else None
                memo_key: tuple = (index, key, containing, unit)
            else:
                memo_key = (index, key, containing)
            frames = self._frames.get(memo_key)
            if frames is None:
                frames = self._make_frames(addr, locs, load, containing)
                if self._addressed is None:  # no frame names addr: the answer holds for the whole range
                    if len(self._frames) >= _MEMO_LIMIT:
                        self._frames.clear()
                    self._frames[memo_key] = frames
            return frames
        plt = self.plt_name(addr)  # stubs have no symbols: only addresses that found none pay for this
        return (NativeFrame(function=plt),) if plt is not None else None

    def plt_name(self, addr: int) -> str | None:
        """`name@plt` (demangled) when `addr` is in a PLT stub of the file."""
        if self._plt is None:
            self._plt = self.open_plt()
        name = self._plt.lookup(addr)
        if name is None:
            return None
        return self._demangle(name.removesuffix("@plt")) + "@plt"

    def forget(self) -> None:
        """Drop memoized chains, frames and demangled names (memory only; answers stay the same)."""
        self._frames.clear()
        self._loc_frames.clear()
        self._names.clear()
        for part in self.parts:
            part.chains.clear()
            if part.reader is not None:
                part.reader.forget()

    def close(self) -> None:
        """Release the start-line source (mmaps, open DWARF files) and the Go table's mapping."""
        if self.go is not None:
            self.go.close()
            self.go = None
        if self._lines is not None:
            self._lines.close()
            self._lines = None
        self._lines_opened = False

    def _locations(self, part: Part, rel: int) -> tuple[int, tuple[Loc, ...]] | None:
        """(range index or _NO_RANGE, locations innermost first) of `rel` in `part`; None when none."""
        reader = part.reader
        if reader is not None and reader.trusted:
            key = reader.find(rel)
            locs = part.chains.get(key)
            if locs is None:
                locs = reader.chain(key, rel)
                if locs is not None and reader.trusted:
                    if len(part.chains) >= _MEMO_LIMIT:
                        part.chains.clear()
                    part.chains[key] = locs
            if reader.trusted and locs is not None:
                return (key, locs) if locs else None
            part.chains.clear()  # the reader disagreed with symbolic: forget what it answered
            self._frames.clear()
        try:
            locs = symcache_lookup(part.cache, rel)
        except (SymbolicError, RuntimeError):
            return None
        return (_NO_RANGE, locs) if locs else None

    def _make_frames(
        self, addr: int, locs: tuple[Loc, ...], load_address: int, containing: int
    ) -> tuple[NativeFrame, ...]:
        """Turn SymCache locations (innermost first) into frames (outermost first).

        A frame depends on its location, on the compile unit holding `addr` (start lines, scopes) and,
        for the outermost, on the symbol containing `addr`: frames are memoized by those, so the inline
        callers shared by many ranges are built once. `_addressed` is set when a name holds `addr`.
        """
        self._addressed = None
        memo = self._loc_frames
        unit: object = _UNSET
        frames = []
        last = len(locs) - 1
        for depth in range(last + 1):
            loc = locs[last - depth]
            outermost = depth == 0
            frame = None
            if depth != last:  # a caller's location (a range's own one is kept by the range memo)
                needs_unit = self.want_start_lines or (
                    not outermost and loc.lang == "cpp" and _BARE_NAME.match(loc.symbol) is not None
                )
                if needs_unit and unit is _UNSET:
                    lines = self._line_source()
                    unit = lines.unit_key(addr) if lines is not None else None
                held = unit if needs_unit else None
                key = (loc, load_address, containing, held) if outermost else (loc, held)
                frame = memo.get(key)
            if frame is None:
                frame = self._make_frame(addr, loc, load_address, containing, outermost)
                if frame.function.endswith(f"+0x{addr:x}"):
                    self._addressed = frame
                elif depth != last:
                    if len(memo) >= _MEMO_LIMIT:
                        memo.clear()
                    memo[key] = frame
            frames.append(frame)
        return tuple(frames)

    def _make_frame(
        self, addr: int, loc: Loc, load_address: int, containing: int, outermost: bool
    ) -> NativeFrame:
        """One location's frame (the outermost is named by the sized symbol containing `addr`)."""
        function, system_name, start = self.name_fields(
            addr, loc.symbol, loc.sym_addr, loc.lang, loc.line, load_address, containing, outermost
        )
        return NativeFrame(function, system_name, loc.full_path, loc.line, not outermost, start)

    def name_fields(
        self,
        addr: int,
        symbol: str,
        sym_addr: int,
        lang: str,
        line: int,
        load_address: int,
        containing: int,
        outermost: bool,
        in_unit: bool = True,
    ) -> tuple[str, str, int]:
        """(function, system name, start line) of a location's frame: what a frame holds besides its
        location's file and line. Depends on `addr` only through its compile unit, except for a
        nameless function (`module+0xADDR`); `in_unit=False` says no unit holds `addr` (no start line,
        no scope), so none is searched for."""
        raw = symbol
        entry: int | None = None
        if outermost:
            entry = sym_addr + load_address if sym_addr != _INLINE_ENTRY else None
            # The sized symbol holding addr names the function: it prefers a global name over local
            # aliases at the same address (__libc_start_main, not __libc_start_main_alias_2) and a
            # function over another one's .cold part.
            if containing >= 0:
                entry, raw = self.extents.starts[containing], self.extents.name_at(containing)
            raw = raw.partition("@")[0]  # symbol version (memcpy@@GLIBC_2.14)
        base = _CLONE_SUFFIX.sub("", raw) if outermost and "." in raw else raw
        function = self._demangle(base) if base else f"{self.module}+0x{addr:x}"
        bare = in_unit and not outermost and lang == "cpp" and _BARE_NAME.match(raw)
        scoped = self._scoped(addr, raw, line) if bare else None
        if scoped is not None:
            function, start = scoped
            raw = function
        else:
            start = self._start_line(addr, symbol or raw, raw, entry) if in_unit else 0
        return function, raw if raw != function else "", start

    def _demangle(self, name: str) -> str:
        found = self._names.get(name)
        if found is None:
            if len(self._names) >= _MEMO_LIMIT:
                self._names.clear()
            found = self._names[name] = demangle(name)
        return found

    def _line_source(self) -> LineSource | None:
        if not self._lines_opened:
            self._lines_opened = True
            self._lines = self.open_lines()
        return self._lines

    def _scoped(self, addr: int, name: str, line: int) -> tuple[str, int] | None:
        """(`ns::Class::name`, start line) for an inlined frame SymCache knows by a bare name only."""
        lines = self._line_source()
        found = lines.qualified_name(addr, name, line) if lines is not None else None
        if found is None:
            return None
        self.stats["native.inline_names_qualified"] += 1
        return found[0], found[1] if self.want_start_lines else 0

    def _start_line(self, addr: int, name: str, alt: str, entry: int | None) -> int:
        lines = self._line_source() if self.want_start_lines else None
        if lines is None:
            return 0
        line = lines.start_line(addr, name, entry)
        if not line and alt != name:
            line = lines.start_line(addr, alt, entry)
        return line
