"""Function start lines (DW_AT_decl_line), which pprof's Function.start_line and Go's PGO need, and
the namespaces and classes of functions SymCache knows only by their bare name.

SymCache does not keep declaration lines, so they are read by the narrow scanner in `dwarfscan`,
lazily: only the compile unit holding a symbolized address is indexed, and only its top-level,
namespace and class scopes. Any DWARF trouble yields 0 (unknown), never an error.

GCC gives functions of internal linkage (static, in an anonymous namespace, members of classes
there) no DW_AT_linkage_name, and SymCache names their inlined frames by DW_AT_name alone (`helper`
for `app::helper`, `method` for `(anonymous namespace)::Hidden::method`); `qualified_name` puts the
enclosing scopes back. When several functions of the unit share the bare name, the one declared
last at or before the frame's line is taken (a function's body follows its declaration).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetprof.symbolize.dwarfscan import DwarfScanError, DwarfSections, Subprogram

_MAX_REF_HOPS = 4


@dataclass(slots=True)
class UnitIndex:
    """Declaration lines of the subprograms of one compile unit, by entry address and by name."""

    by_entry: dict[int, int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)
    scoped: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # bare name -> (line, full)


class UnitLines:
    """Start-line and scope lookups over compile-unit address ranges and per-unit indexes.

    `_unit_at(offset)` supplies a unit's index: decoded lazily from DWARF by `StartLines`, or from a
    symbol bundle's precomputed tables (`fleetprof.symbolize.bundle`), so both answer alike.
    """

    def __init__(self) -> None:
        self._ranges: list[tuple[int, int, int]] = []  # (start, end, unit offset), sorted
        self._starts: list[int] = []  # the ranges' starts, for bisecting on plain integers
        self._units: dict[int, UnitIndex] = {}

    def _set_ranges(self, ranges: list[tuple[int, int, int]]) -> None:
        self._ranges = sorted(ranges)
        self._starts = [start for start, _, _ in self._ranges]

    def start_line(self, addr: int, name: str, entry: int | None) -> int:
        """Decl line of function `name` (linkage or plain name) at ELF address `addr`; 0 when unknown.

        `entry` is the function's entry address for an out-of-line frame, None for an inlined one.
        """
        unit = self._unit_for(addr)
        if unit is None:
            return 0
        if entry is not None and entry in unit.by_entry:
            return unit.by_entry[entry]
        line = unit.by_name.get(name)
        if line is None and "." in name[1:]:
            line = unit.by_name.get(name[: name.index(".", 1)])  # GCC clones: foo.cold, foo.isra.0
        return line or 0

    def qualified_name(self, addr: int, name: str, line: int) -> tuple[str, int] | None:
        """(`ns::Class::name`, decl line) for the function with bare DW_AT_name `name` whose code at
        `addr` is on source line `line`; None when unknown or when the function has no scope."""
        unit = self._unit_for(addr)
        candidates = unit.scoped.get(name) if unit is not None else None
        if not candidates:
            return None
        if len(candidates) == 1:
            decl, full = candidates[0]
        else:
            before = [c for c in candidates if c[0] <= line] if line else []
            if not before:
                return None
            decl, full = max(before)
        return (full, decl) if full != name else None

    def unit_key(self, addr: int) -> int | None:
        """Offset of the compile unit that answers for `addr`, None when none does."""
        return self._unit_offset(addr) if self._ready() else None

    def ranges(self) -> list[tuple[int, int, int]] | None:
        """The compile units' (start, end, unit offset) ranges, sorted; None when they can't be had."""
        return self._ranges if self._ready() else None

    def close(self) -> None:
        """Release whatever backs the index (nothing here)."""

    def _ready(self) -> bool:
        """Whether `_ranges` is filled and units can be asked for."""
        return True

    def _unit_at(self, offset: int) -> UnitIndex:
        """The index of the unit at `offset` (called once per unit)."""
        return UnitIndex()

    def _unit_for(self, addr: int) -> UnitIndex | None:
        if not self._ready():
            return None
        offset = self._unit_offset(addr)
        if offset is None:
            return None
        unit = self._units.get(offset)
        if unit is None:
            unit = self._units[offset] = self._unit_at(offset)
        return unit

    def _unit_offset(self, addr: int) -> int | None:
        ranges = self._ranges
        idx = bisect.bisect_right(self._starts, addr) - 1  # the last range starting at or before addr
        for i in range(idx, idx - 4 if idx >= 4 else -1, -1):
            _, end, offset = ranges[i]
            if addr < end:
                return offset
        return None


class StartLines(UnitLines):
    """Lazy DW_AT_decl_line lookups in one ELF file with DWARF (the binary or its debug file)."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self._sections: DwarfSections | None = None
        self._failed = ""

    @property
    def failure(self) -> str:
        """Why start lines are unavailable for this file ("" when they are)."""
        return self._failed

    def export(self) -> tuple[list[tuple[int, int, int]], dict[int, UnitIndex]]:
        """Every unit range and every unit's index, as lookups would see them (for symbol bundles)."""
        if not self._ready():
            return [], {}
        for offset in sorted({offset for _, _, offset in self._ranges}):
            if offset not in self._units:
                self._units[offset] = self._unit_at(offset)
        return list(self._ranges), dict(self._units)

    def close(self) -> None:
        """Release the mapped file."""
        if self._sections is not None:
            self._sections.close()
            self._sections = None

    def _ready(self) -> bool:
        return self._open() is not None

    def _open(self) -> DwarfSections | None:
        if self._sections is None and not self._failed:
            try:
                self._sections = DwarfSections(self._path)
                if not self._sections.has_info():
                    self._failed = "no .debug_info"
                    return None
                ranges = self._sections.aranges() or [
                    (start, end, unit.offset) for unit in self._sections.units() for start, end in unit.ranges
                ]
                self._set_ranges(ranges)
            except Exception as exc:  # pyelftools and mmap raise many types on bad files; lines are optional
                self._failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                return None
        return self._sections

    def _unit_at(self, offset: int) -> UnitIndex:
        sections = self._sections
        assert sections is not None
        try:
            header = sections.unit_at(offset)
            found = sections.subprograms(header)
            return _index(found, lambda ref: sections.subprogram_at(header, ref))
        except (DwarfScanError, IndexError, ValueError) as exc:
            self._failed = f"unit {offset:#x}: {exc}"
            return UnitIndex()


def _index(found: dict[int, Subprogram], fetch: Callable[[int], Subprogram | None]) -> UnitIndex:
    """Resolve abstract_origin/specification chains and index decl lines by entry and by name.

    A reference into a function body (not scanned) is decoded on its own through `fetch`.
    """
    index = UnitIndex()
    scoped: dict[str, set[tuple[int, str]]] = {}
    for sub in list(found.values()):
        line, names, ref, plain, scope = sub.decl_line, list(sub.names), sub.ref, sub.name, sub.scope
        for _ in range(_MAX_REF_HOPS):
            if ref < 0:
                break
            target = found.get(ref)
            if target is None:
                target = fetch(ref)
                if target is None:
                    break
                found[ref] = target
            line = line or target.decl_line
            names.extend(target.names)
            plain = plain or target.name
            if target.scope and (scope is None or len(target.scope) > len(scope)):
                scope = target.scope  # the declaration in its class, not the definition at top level
            ref = target.ref
        if not line:
            continue
        for name in names:
            index.by_name.setdefault(name, line)
        if sub.low_pc:
            index.by_entry.setdefault(sub.low_pc, line)
        if plain and scope is not None:
            scoped.setdefault(plain, set()).add((line, f"{scope}::{plain}" if scope else plain))
    index.scoped = {name: sorted(found) for name, found in scoped.items()}
    return index
