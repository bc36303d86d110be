"""A narrow DWARF 2-5 reader for two facts SymCache drops: each subprogram's DW_AT_decl_line and the
namespaces and classes that enclose it (GCC gives no DW_AT_linkage_name to functions of internal
linkage, so an inlined one is known to SymCache by its bare DW_AT_name).

pyelftools parses every attribute of every DIE (~40 µs each; ~0.1 s per libpython compile unit), so
this scanner decodes only names, low_pc, decl_line and references of DW_TAG_subprogram DIEs and the
names of scope DIEs, skips all other attributes by form, and jumps over function bodies with
DW_AT_sibling. Unknown forms or
truncated data raise DwarfScanError for that one compile unit. Sections are found by `elf.view` (which
also decompresses them); uncompressed ones are read through mmap.
"""

from __future__ import annotations

import contextlib
import mmap
import struct
from dataclasses import dataclass, field

from fleetprof.elf.view import SHF_COMPRESSED, SHT_NOBITS, ElfView

TAG_COMPILE_UNIT = 0x11
TAG_PARTIAL_UNIT = 0x3C
TAG_SUBPROGRAM = 0x2E
TAG_NAMESPACE = 0x39
SCOPE_TAGS = frozenset({0x02, 0x13, 0x17, TAG_NAMESPACE, 0x1E, TAG_COMPILE_UNIT, TAG_PARTIAL_UNIT})
ANONYMOUS_NAMESPACE = "(anonymous namespace)"  # as the C++ demanglers print it

AT_SIBLING = 0x01
AT_NAME = 0x03
AT_LOW_PC = 0x11
AT_HIGH_PC = 0x12
AT_DECL_LINE = 0x3B
AT_ABSTRACT_ORIGIN = 0x31
AT_SPECIFICATION = 0x47
AT_RANGES = 0x55
AT_LINKAGE_NAME = 0x6E
AT_MIPS_LINKAGE_NAME = 0x2007
AT_STR_OFFSETS_BASE = 0x72
AT_ADDR_BASE = 0x73
AT_RNGLISTS_BASE = 0x74
_NAME_ATTRS = frozenset({AT_NAME, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME})
_REF_ATTRS = frozenset({AT_ABSTRACT_ORIGIN, AT_SPECIFICATION})
_UNIT_ATTRS = frozenset(
    {AT_LOW_PC, AT_HIGH_PC, AT_RANGES, AT_STR_OFFSETS_BASE, AT_ADDR_BASE, AT_RNGLISTS_BASE}
)

# Forms by size class. "O" = offset size (4 or 8), "A" = address size.
_FIXED = {0x0B: 1, 0x0C: 1, 0x11: 1, 0x25: 1, 0x29: 1, 0x05: 2, 0x12: 2, 0x26: 2, 0x2A: 2}
_FIXED |= {0x27: 3, 0x2B: 3, 0x06: 4, 0x13: 4, 0x1C: 4, 0x28: 4, 0x2C: 4}
_FIXED |= {0x07: 8, 0x14: 8, 0x20: 8, 0x24: 8, 0x1E: 16, 0x19: 0, 0x21: 0}
_OFFSET_FORMS = frozenset({0x0E, 0x17, 0x1D, 0x1F, 0x1F20, 0x1F21})
_ULEB_FORMS = frozenset({0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02})
_BLOCK_ULEB = frozenset({0x09, 0x18})
FORM_ADDR, FORM_STRING, FORM_SDATA, FORM_INDIRECT = 0x01, 0x08, 0x0D, 0x16
FORM_REF_ADDR, FORM_IMPLICIT_CONST = 0x10, 0x21
_LOCAL_REFS = frozenset({0x11, 0x12, 0x13, 0x14, 0x15})
_STRX = frozenset({0x1A, 0x25, 0x26, 0x27, 0x28, 0x1F02})
_ADDRX = frozenset({0x1B, 0x29, 0x2A, 0x2B, 0x2C, 0x1F01})
_INT_FORMS = frozenset({0x0B, 0x05, 0x06, 0x07, 0x0F, FORM_SDATA, FORM_IMPLICIT_CONST})
_SECTIONS = (
    ".debug_info",
    ".debug_abbrev",
    ".debug_str",
    ".debug_line_str",
    ".debug_str_offsets",
    ".debug_addr",
    ".debug_aranges",
    ".debug_ranges",
    ".debug_rnglists",
)


class DwarfScanError(Exception):
    """Malformed or unsupported DWARF in one unit; the message is one line."""


@dataclass(slots=True)
class _Abbrev:
    tag: int
    children: bool
    attrs: list[tuple[int, int, int]]  # (attribute, form, implicit const)


@dataclass(slots=True)
class Unit:
    """One compile unit header plus the CU DIE facts needed to decode its DIEs."""

    offset: int
    end: int
    die_offset: int
    version: int
    offset_size: int
    addr_size: int
    abbrev_offset: int
    low_pc: int = 0
    str_offsets_base: int = 8
    addr_base: int = 8
    rnglists_base: int = 12
    ranges: list[tuple[int, int]] = field(default_factory=list)


@dataclass(slots=True)
class Subprogram:
    """What a subprogram DIE says, before following its abstract_origin/specification reference."""

    decl_line: int
    names: list[str]
    ref: int  # absolute .debug_info offset, -1 when none
    low_pc: int
    name: str = ""  # DW_AT_name alone, "" when absent
    scope: str | None = None  # enclosing namespaces/classes ("a::B"), "" at top level, None when unknown


class DwarfSections:
    """The DWARF sections of one ELF file, read lazily (mmap, or decompressed bytes)."""

    def __init__(self, path: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - owned for the life of the mmap
        try:
            self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self.data: dict[str, memoryview | bytes] = {}
            with ElfView(path) as elf:
                self.little = elf.little_endian
                for section in elf.section_list:
                    name = section.name
                    if name.startswith(".zdebug_"):
                        name = ".debug_" + name[len(".zdebug_") :]
                    if name not in _SECTIONS or section.type == SHT_NOBITS:
                        continue
                    if section.flags & SHF_COMPRESSED or section.name.startswith(".zdebug_"):
                        self.data[name] = elf.section_data(section) or b""
                    else:
                        off, size = section.offset, section.size
                        self.data[name] = memoryview(self._map)[off : off + size]
        except BaseException:
            self.close()
            raise
        self._abbrevs: dict[int, dict[int, _Abbrev]] = {}

    def close(self) -> None:
        """Release the mapping and the file."""
        self.data = {}
        if getattr(self, "_map", None) is not None:
            with contextlib.suppress(BufferError):  # a view still points into it; the GC unmaps it
                self._map.close()
        self._file.close()

    def has_info(self) -> bool:
        """Whether there is a .debug_info to scan."""
        return bool(self.data.get(".debug_info")) and bool(self.data.get(".debug_abbrev"))

    def units(self) -> list[Unit]:
        """Every compile unit header (cheap: follows unit lengths, reads only each CU DIE)."""
        info = self.data.get(".debug_info", b"")
        out: list[Unit] = []
        pos = 0
        while pos + 11 <= len(info):
            unit = self._unit_header(info, pos)
            if unit.end > len(info) or unit.end <= pos:
                raise DwarfScanError(f"unit at {pos:#x} overruns .debug_info")
            out.append(unit)
            pos = unit.end
        return out

    def unit_at(self, offset: int) -> Unit:
        """The unit whose header starts at `offset` (from .debug_aranges), with its CU DIE read."""
        info = self.data.get(".debug_info", b"")
        unit = self._unit_header(info, offset)
        if unit.end > len(info):
            raise DwarfScanError(f"unit at {offset:#x} overruns .debug_info")
        return unit

    def aranges(self) -> list[tuple[int, int, int]]:
        """(start, end, unit offset) from .debug_aranges, unsorted; empty when absent."""
        data = self.data.get(".debug_aranges", b"")
        out: list[tuple[int, int, int]] = []
        pos = 0
        order = "<" if self.little else ">"
        while pos + 12 <= len(data):
            length, offset_size, pos_after = self._initial_length(data, pos)
            end = pos_after + length
            version = struct.unpack_from(order + "H", data, pos_after)[0]
            if version != 2 or end > len(data):
                break
            p = pos_after + 2
            unit_offset = self._uint(data, p, offset_size)
            addr_size = data[p + offset_size]
            p += offset_size + 2
            if addr_size not in (4, 8):
                break
            tuple_size = 2 * addr_size
            p += (-p) % tuple_size
            while p + tuple_size <= end:
                start = self._uint(data, p, addr_size)
                size = self._uint(data, p + addr_size, addr_size)
                p += tuple_size
                if start == 0 and size == 0:
                    break
                if size:
                    out.append((start, start + size, unit_offset))
            pos = end
        return out

    def subprograms(self, unit: Unit) -> dict[int, Subprogram]:
        """Every subprogram DIE of `unit` reachable without entering function bodies, by offset."""
        return _UnitScanner(self, unit).run()

    def subprogram_at(self, unit: Unit, offset: int) -> Subprogram | None:
        """Decode the one DIE at `offset` (e.g. an abstract origin inside a function body)."""
        if not unit.die_offset <= offset < unit.end:
            return None
        return _UnitScanner(self, unit).one(offset)

    def abbrevs(self, offset: int) -> dict[int, _Abbrev]:
        """The abbreviation table at `offset` in .debug_abbrev (cached)."""
        table = self._abbrevs.get(offset)
        if table is None:
            table = self._abbrevs[offset] = self._parse_abbrevs(offset)
        return table

    def _parse_abbrevs(self, offset: int) -> dict[int, _Abbrev]:
        data = self.data[".debug_abbrev"]
        table: dict[int, _Abbrev] = {}
        pos = offset
        while True:
            code, pos = _uleb(data, pos)
            if code == 0:
                return table
            tag, pos = _uleb(data, pos)
            if pos >= len(data):
                raise DwarfScanError("truncated .debug_abbrev")
            children = data[pos] == 1
            pos += 1
            attrs: list[tuple[int, int, int]] = []
            while True:
                attr, pos = _uleb(data, pos)
                form, pos = _uleb(data, pos)
                const = 0
                if form == FORM_IMPLICIT_CONST:
                    const, pos = _sleb(data, pos)
                if attr == 0 and form == 0:
                    break
                attrs.append((attr, form, const))
            table[code] = _Abbrev(tag, children, attrs)

    def _initial_length(self, data: memoryview | bytes, pos: int) -> tuple[int, int, int]:
        length = self._uint(data, pos, 4)
        if length == 0xFFFFFFFF:
            return self._uint(data, pos + 4, 8), 8, pos + 12
        if length >= 0xFFFFFFF0:
            raise DwarfScanError(f"reserved unit length at {pos:#x}")
        return length, 4, pos + 4

    def _uint(self, data: memoryview | bytes, pos: int, size: int) -> int:
        if pos + size > len(data):
            raise DwarfScanError("read past end of section")
        return int.from_bytes(data[pos : pos + size], "little" if self.little else "big")

    def _unit_header(self, info: memoryview | bytes, pos: int) -> Unit:
        length, offset_size, p = self._initial_length(info, pos)
        end = p + length
        version = self._uint(info, p, 2)
        p += 2
        if version >= 5:
            unit_type = info[p]
            addr_size = info[p + 1]
            abbrev_offset = self._uint(info, p + 2, offset_size)
            p += 2 + offset_size
            if unit_type in (4, 5):  # skeleton / split_compile: dwo_id
                p += 8
            elif unit_type in (2, 6):  # type / split_type: signature + type offset
                p += 8 + offset_size
        elif version >= 2:
            abbrev_offset = self._uint(info, p, offset_size)
            addr_size = info[p + offset_size]
            p += offset_size + 1
        else:
            raise DwarfScanError(f"unsupported DWARF version {version}")
        if addr_size not in (4, 8):
            raise DwarfScanError(f"unsupported address size {addr_size}")
        unit = Unit(pos, end, p, version, offset_size, addr_size, abbrev_offset)
        _UnitScanner(self, unit).read_unit_die()
        return unit


class _UnitScanner:
    """Walks one unit's DIEs; decodes attributes only where needed."""

    def __init__(self, sections: DwarfSections, unit: Unit) -> None:
        self.s = sections
        self.u = unit
        self.info = sections.data[".debug_info"]
        self.abbrevs = sections.abbrevs(unit.abbrev_offset)
        self.order = "little" if sections.little else "big"

    def read_unit_die(self) -> None:
        """Fill the unit's bases and address ranges from its first DIE."""
        pos = self.u.die_offset
        code, pos = _uleb(self.info, pos)
        abbrev = self.abbrevs.get(code)
        if abbrev is None:
            raise DwarfScanError(f"unknown abbrev {code} in unit DIE")
        values: dict[int, tuple[int, int | str]] = {}
        for attr, form, const in abbrev.attrs:
            if attr in _UNIT_ATTRS:
                value, pos = self._value(form, pos, const, strings=False)
                values[attr] = (form, value)
            else:
                pos = self._skip(form, pos)
        u = self.u
        u.str_offsets_base = int(values.get(AT_STR_OFFSETS_BASE, (0, u.str_offsets_base))[1])
        u.addr_base = int(values.get(AT_ADDR_BASE, (0, u.addr_base))[1])
        u.rnglists_base = int(values.get(AT_RNGLISTS_BASE, (0, u.rnglists_base))[1])
        low = values.get(AT_LOW_PC)
        if low is not None:
            u.low_pc = self._address(*low)
        high = values.get(AT_HIGH_PC)
        if AT_RANGES in values:
            u.ranges = self._ranges(*values[AT_RANGES])
        elif low is not None and high is not None:
            form, value = high
            end = self._address(form, value) if form in _ADDRX or form == FORM_ADDR else u.low_pc + int(value)
            u.ranges = [(u.low_pc, end)]

    def run(self) -> dict[int, Subprogram]:
        """Scan the unit's DIE tree, descending into scopes and skipping function bodies by sibling."""
        info, abbrevs, u = self.info, self.abbrevs, self.u
        found: dict[int, Subprogram] = {}
        pos = u.die_offset
        scopes: list[str | None] = []  # the scope each open DIE gives its children
        while pos < u.end:
            die_offset = pos
            code, pos = _uleb(info, pos)
            if code == 0:
                if scopes:
                    scopes.pop()
                if not scopes:
                    break
                continue
            abbrev = abbrevs.get(code)
            if abbrev is None:
                raise DwarfScanError(f"unknown abbrev {code} at {die_offset:#x}")
            name = ""
            if abbrev.tag == TAG_SUBPROGRAM:
                sub, sibling, pos = self._subprogram(abbrev, pos)
                sub.scope = scopes[-1] if scopes else ""
                found[die_offset] = sub
            elif abbrev.tag in SCOPE_TAGS:
                name, sibling, pos = self._scope_die(abbrev, pos)
            else:
                sibling, pos = self._skip_die(abbrev, pos)
            if abbrev.children:
                if abbrev.tag not in SCOPE_TAGS and sibling > pos:
                    pos = sibling
                else:
                    scopes.append(_inner_scope(scopes[-1] if scopes else "", abbrev.tag, name))
        return found

    def one(self, offset: int) -> Subprogram | None:
        """The subprogram DIE at `offset`, or None when the DIE there is something else."""
        code, pos = _uleb(self.info, offset)
        abbrev = self.abbrevs.get(code)
        if abbrev is None or abbrev.tag != TAG_SUBPROGRAM:
            return None
        return self._subprogram(abbrev, pos)[0]

    def _subprogram(self, abbrev: _Abbrev, pos: int) -> tuple[Subprogram, int, int]:
        line, names, ref, low, sibling, plain = 0, [], -1, 0, -1, ""
        for attr, form, const in abbrev.attrs:
            if attr == AT_DECL_LINE and form in _INT_FORMS:
                value, pos = self._value(form, pos, const, strings=False)
                line = int(value)
            elif attr in _NAME_ATTRS:
                value, pos = self._value(form, pos, const, strings=True)
                if isinstance(value, str) and value:
                    names.append(value)
                    plain = value if attr == AT_NAME else plain
            elif attr in _REF_ATTRS or attr == AT_SIBLING:
                value, pos = self._value(form, pos, const, strings=False)
                target = self._ref(form, int(value))
                if attr == AT_SIBLING:
                    sibling = target
                else:
                    ref = target
            elif attr == AT_LOW_PC:
                value, pos = self._value(form, pos, const, strings=False)
                low = self._address(form, value)
            else:
                pos = self._skip(form, pos)
        return Subprogram(line, names, ref, low, plain), sibling, pos

    def _scope_die(self, abbrev: _Abbrev, pos: int) -> tuple[str, int, int]:
        """(DW_AT_name, sibling, next position) of a namespace, class, struct, union or unit DIE."""
        name, sibling = "", -1
        for attr, form, const in abbrev.attrs:
            if attr == AT_NAME:
                value, pos = self._value(form, pos, const, strings=True)
                name = value if isinstance(value, str) else ""
            elif attr == AT_SIBLING:
                value, pos = self._value(form, pos, const, strings=False)
                sibling = self._ref(form, int(value))
            else:
                pos = self._skip(form, pos)
        return name, sibling, pos

    def _skip_die(self, abbrev: _Abbrev, pos: int) -> tuple[int, int]:
        sibling = -1
        for attr, form, const in abbrev.attrs:
            if attr == AT_SIBLING:
                value, pos = self._value(form, pos, const, strings=False)
                sibling = self._ref(form, int(value))
            else:
                pos = self._skip(form, pos)
        return sibling, pos

    def _ref(self, form: int, value: int) -> int:
        if form in _LOCAL_REFS:
            return self.u.offset + value
        if form == FORM_REF_ADDR:
            return value
        return -1  # supplementary-file and type-signature references: not followed

    def _address(self, form: int, value: int | str) -> int:
        if form == FORM_ADDR:
            return int(value)
        if form in _ADDRX:
            data = self.s.data.get(".debug_addr", b"")
            return self.s._uint(data, self.u.addr_base + int(value) * self.u.addr_size, self.u.addr_size)
        return 0

    def _skip(self, form: int, pos: int) -> int:
        size = _FIXED.get(form)
        if size is not None:
            return pos + size
        if form in _OFFSET_FORMS:
            return pos + self.u.offset_size
        if form in _ULEB_FORMS or form == FORM_SDATA:
            return _skip_leb(self.info, pos)
        if form == FORM_ADDR:
            return pos + self.u.addr_size
        if form == FORM_STRING:
            end = _find_nul(self.info, pos)
            return end + 1
        if form in _BLOCK_ULEB:
            length, pos = _uleb(self.info, pos)
            return pos + length
        if form == 0x0A:
            return pos + 1 + self.info[pos]
        if form == 0x03:
            return pos + 2 + int.from_bytes(self.info[pos : pos + 2], self.order)
        if form == 0x04:
            return pos + 4 + int.from_bytes(self.info[pos : pos + 4], self.order)
        if form == FORM_REF_ADDR:
            return pos + (self.u.addr_size if self.u.version == 2 else self.u.offset_size)
        if form == FORM_INDIRECT:
            real, pos = _uleb(self.info, pos)
            return self._skip(real, pos)
        raise DwarfScanError(f"unknown DW_FORM {form:#x}")

    def _value(self, form: int, pos: int, const: int, strings: bool) -> tuple[int | str, int]:
        """Decode one attribute value: integers, references, addresses and (if asked) strings."""
        info, u = self.info, self.u
        if form == FORM_IMPLICIT_CONST:
            return const, pos
        if form == FORM_SDATA:
            return _sleb(info, pos)
        if form in _ULEB_FORMS:
            value, end = _uleb(info, pos)
            return (self._strx(value) if strings else value) if form in _STRX else value, end
        if form == FORM_STRING:
            end = _find_nul(info, pos)
            return (bytes(info[pos:end]).decode("utf-8", "replace") if strings else 0), end + 1
        if form == FORM_INDIRECT:
            real, pos = _uleb(info, pos)
            return self._value(real, pos, const, strings)
        if form in (0x0E, 0x1F):  # strp, line_strp
            offset = self.s._uint(info, pos, u.offset_size)
            section = ".debug_str" if form == 0x0E else ".debug_line_str"
            return (self._cstr(section, offset) if strings else offset), pos + u.offset_size
        if form in _OFFSET_FORMS:
            return self.s._uint(info, pos, u.offset_size), pos + u.offset_size
        if form == FORM_ADDR:
            return self.s._uint(info, pos, u.addr_size), pos + u.addr_size
        if form == FORM_REF_ADDR:
            size = u.addr_size if u.version == 2 else u.offset_size
            return self.s._uint(info, pos, size), pos + size
        size = _FIXED.get(form)
        if size is None or size == 0:
            return 0, self._skip(form, pos)
        value = self.s._uint(info, pos, size)
        if form in _STRX and strings:
            return self._strx(value), pos + size
        return value, pos + size

    def _strx(self, index: int) -> str:
        data = self.s.data.get(".debug_str_offsets", b"")
        size = self.u.offset_size
        offset = self.s._uint(data, self.u.str_offsets_base + index * size, size)
        return self._cstr(".debug_str", offset)

    def _cstr(self, section: str, offset: int) -> str:
        data = self.s.data.get(section, b"")
        if offset >= len(data):
            raise DwarfScanError(f"string offset {offset:#x} past end of {section}")
        end = _find_nul(data, offset)
        return bytes(data[offset:end]).decode("utf-8", "replace")

    def _ranges(self, form: int, value: int | str) -> list[tuple[int, int]]:
        u = self.u
        if u.version < 5:
            return self._ranges_v4(int(value))
        offset = int(value)
        if form == 0x23:  # rnglistx: index into the offsets table after the rnglists header
            data = self.s.data.get(".debug_rnglists", b"")
            offset = u.rnglists_base + self.s._uint(
                data, u.rnglists_base + offset * u.offset_size, u.offset_size
            )
        return self._ranges_v5(offset)

    def _ranges_v4(self, offset: int) -> list[tuple[int, int]]:
        data = self.s.data.get(".debug_ranges", b"")
        size = self.u.addr_size
        top = (1 << (8 * size)) - 1
        base, out, pos = self.u.low_pc, [], offset
        while pos + 2 * size <= len(data):
            start, end = self.s._uint(data, pos, size), self.s._uint(data, pos + size, size)
            pos += 2 * size
            if start == 0 and end == 0:
                break
            if start == top:
                base = end
            elif end > start:
                out.append((base + start, base + end))
        return out

    def _ranges_v5(self, offset: int) -> list[tuple[int, int]]:
        data = self.s.data.get(".debug_rnglists", b"")
        size = self.u.addr_size
        base, out, pos = self.u.low_pc, [], offset
        while pos < len(data):
            kind = data[pos]
            pos += 1
            if kind == 0:
                break
            if kind == 1:
                index, pos = _uleb(data, pos)
                base = self._address(0x1B, index)
            elif kind in (2, 3):
                a, pos = _uleb(data, pos)
                b, pos = _uleb(data, pos)
                start = self._address(0x1B, a)
                end = self._address(0x1B, b) if kind == 2 else start + b
                out.append((start, end))
            elif kind == 4:
                a, pos = _uleb(data, pos)
                b, pos = _uleb(data, pos)
                out.append((base + a, base + b))
            elif kind == 5:
                base, pos = self.s._uint(data, pos, size), pos + size
            elif kind == 6:
                start, end = self.s._uint(data, pos, size), self.s._uint(data, pos + size, size)
                pos += 2 * size
                out.append((start, end))
            elif kind == 7:
                start, pos = self.s._uint(data, pos, size), pos + size
                length, pos = _uleb(data, pos)
                out.append((start, start + length))
            else:
                raise DwarfScanError(f"unknown range list entry {kind}")
        return out


def _inner_scope(outer: str | None, tag: int, name: str) -> str | None:
    """The scope a DIE with `tag` and `name` gives its children, inside scope `outer`."""
    if tag in (TAG_COMPILE_UNIT, TAG_PARTIAL_UNIT):
        return ""
    if outer is None or tag not in SCOPE_TAGS:
        return None  # inside a function body, or under an unnamed type: not qualified
    if not name:
        if tag != TAG_NAMESPACE:
            return None
        name = ANONYMOUS_NAMESPACE
    return f"{outer}::{name}" if outer else name


def _uleb(data: memoryview | bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    try:
        while True:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result, pos
            shift += 7
    except IndexError:
        raise DwarfScanError("truncated LEB128") from None


def _sleb(data: memoryview | bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    byte = 0x80
    try:
        while byte & 0x80:
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            shift += 7
    except IndexError:
        raise DwarfScanError("truncated LEB128") from None
    if byte & 0x40:
        result -= 1 << shift
    return result, pos


def _skip_leb(data: memoryview | bytes, pos: int) -> int:
    try:
        while data[pos] & 0x80:
            pos += 1
    except IndexError:
        raise DwarfScanError("truncated LEB128") from None
    return pos + 1


def _find_nul(data: memoryview | bytes, pos: int) -> int:
    """Offset of the NUL ending the string at `pos` (mmap views are searched in growing windows)."""
    if isinstance(data, bytes):
        end = data.find(b"\0", pos)
        if end < 0:
            raise DwarfScanError("unterminated string")
        return end
    window = 64
    while True:
        end = bytes(data[pos : pos + window]).find(b"\0")
        if end >= 0:
            return pos + end
        if pos + window >= len(data):
            raise DwarfScanError("unterminated string")
        window *= 4
