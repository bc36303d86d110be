"""Function start lines (DW_AT_decl_line), which pprof's Function.start_line and Go's PGO need.

SymCache does not keep declaration lines, so they are read by the narrow scanner in `dwarfscan`,
lazily: only the compile unit holding a symbolized address is indexed, and only its top-level,
namespace and class scopes. Any DWARF trouble yields 0 (unknown), never an error.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field

from fleetprof.symbolize.dwarfscan import DwarfScanError, DwarfSections, Subprogram

_MAX_REF_HOPS = 4


@dataclass(slots=True)
class _UnitIndex:
    """Declaration lines of the subprograms of one compile unit, by entry address and by name."""

    by_entry: dict[int, int] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)


class StartLines:
    """Lazy DW_AT_decl_line lookups in one ELF file with DWARF (the binary or its debug file)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._sections: DwarfSections | None = None
        self._failed = ""
        self._ranges: list[tuple[int, int, int]] = []  # (start, end, unit offset), sorted
        self._units: dict[int, _UnitIndex] = {}

    @property
    def failure(self) -> str:
        """Why start lines are unavailable for this file ("" when they are)."""
        return self._failed

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

    def close(self) -> None:
        """Release the mapped file."""
        if self._sections is not None:
            self._sections.close()
            self._sections = None

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
                self._ranges = sorted(ranges)
            except Exception as exc:  # pyelftools and mmap raise many types on bad files; lines are optional
                self._failed = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
                return None
        return self._sections

    def _unit_for(self, addr: int) -> _UnitIndex | None:
        sections = self._open()
        if sections is None:
            return None
        offset = self._unit_offset(addr)
        if offset is None:
            return None
        unit = self._units.get(offset)
        if unit is None:
            try:
                header = sections.unit_at(offset)
                found = sections.subprograms(header)
                unit = _index(found, lambda ref: sections.subprogram_at(header, ref))
            except (DwarfScanError, IndexError, ValueError) as exc:
                self._failed = f"unit {offset:#x}: {exc}"
                unit = _UnitIndex()
            self._units[offset] = unit
        return unit

    def _unit_offset(self, addr: int) -> int | None:
        idx = bisect.bisect_right(self._ranges, (addr, 1 << 64, 0)) - 1
        for i in range(idx, max(idx - 4, -1), -1):
            start, end, offset = self._ranges[i]
            if start <= addr < end:
                return offset
        return None


def _index(found: dict[int, Subprogram], fetch: Callable[[int], Subprogram | None]) -> _UnitIndex:
    """Resolve abstract_origin/specification chains and index decl lines by entry and by name.

    A reference into a function body (not scanned) is decoded on its own through `fetch`.
    """
    index = _UnitIndex()
    for sub in list(found.values()):
        line, names, ref = sub.decl_line, list(sub.names), sub.ref
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
            ref = target.ref
        if not line:
            continue
        for name in names:
            index.by_name.setdefault(name, line)
        if sub.low_pc:
            index.by_entry.setdefault(sub.low_pc, line)
    return index
