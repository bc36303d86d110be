"""Where an ELF file's code is: executable sections, and each function symbol's start, size and name.

SymCache stretches a symbol-table-only function to the next symbol (and the last one to infinity), so
an address in a PLT stub, in padding past `_fini`, or in a static function a stripped library does not
export would get a wrong name; and it names a DWARF function after the symbol at its lowest address,
which for GCC's hot/cold splits is `foo.cold` (or another function's `.cold` alias). These extents let
the native symbolizer reject such matches and name the outer frame by the symbol that contains it.
"""

from __future__ import annotations

import bisect
import struct
from array import array
from dataclasses import dataclass, field
from typing import BinaryIO

from elftools.common.exceptions import ELFError as _PyElfError
from elftools.elf.elffile import ELFFile

from fleetprof.elf.reader import ELF_MAGIC, ElfError

SHF_EXECINSTR = 0x4
STT_FUNC = 2
STT_GNU_IFUNC = 10
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00


@dataclass(slots=True)
class CodeExtents:
    """Executable sections (sorted, disjoint) and function symbols (start → size) of one ELF file."""

    sections: list[tuple[int, int]] = field(default_factory=list)  # [start, end) ELF vaddrs
    starts: array = field(default_factory=lambda: array("Q"))  # sorted symbol start addresses
    sizes: array = field(default_factory=lambda: array("Q"))  # largest size of a symbol at each start
    name_offsets: array = field(default_factory=lambda: array("Q"))  # into `names`, one per start
    names: bytes = b""  # NUL-terminated symbol names

    def section_of(self, addr: int) -> int:
        """Index of the executable section holding `addr`, or -1."""
        idx = bisect.bisect_right(self.sections, (addr, 1 << 64)) - 1
        if idx >= 0 and self.sections[idx][0] <= addr < self.sections[idx][1]:
            return idx
        return -1

    def covers(self, sym_start: int, addr: int) -> bool:
        """Whether a symbol starting at `sym_start` plausibly contains `addr` (size, else same section)."""
        if not self.sections:
            return True
        section = self.section_of(addr)
        if section < 0:
            return False
        idx = bisect.bisect_left(self.starts, sym_start)
        if idx < len(self.starts) and self.starts[idx] == sym_start and self.sizes[idx]:
            return addr < sym_start + self.sizes[idx]
        return self.section_of(sym_start) == section

    def containing(self, addr: int) -> tuple[int, str] | None:
        """(start, name) of the sized function symbol that contains `addr`, or None."""
        idx = bisect.bisect_right(self.starts, addr) - 1
        for i in range(idx, max(idx - 8, -1), -1):  # a few back: a large symbol may enclose small ones
            start, size = self.starts[i], self.sizes[i]
            if start <= addr < start + size:
                return start, self.name_at(i)
        return None

    def name_at(self, index: int) -> str:
        """Name of the symbol at position `index`."""
        off = self.name_offsets[index]
        end = self.names.find(b"\0", off)
        return self.names[off : end if end >= 0 else len(self.names)].decode("utf-8", "replace")

    def merged(self, other: CodeExtents) -> CodeExtents:
        """Union of two files' symbols (a binary and its debug file); sections from whichever has them."""
        table: dict[int, tuple[int, int, str]] = {}
        for ext in (self, other):
            for i, start in enumerate(ext.starts):
                rank = (ext.sizes[i], 0)
                if start not in table or rank > table[start][:2]:
                    table[start] = (ext.sizes[i], 0, ext.name_at(i))
        return _build(self.sections or other.sections, {s: (v[0], v[2]) for s, v in table.items()})

    def to_bytes(self) -> bytes:
        """Compact serialization for the on-disk cache."""
        flat = array("Q", (v for sec in self.sections for v in sec))
        head = struct.pack("<QQQ", len(self.sections), len(self.starts), len(self.names))
        body = flat.tobytes() + self.starts.tobytes() + self.sizes.tobytes() + self.name_offsets.tobytes()
        return head + body + self.names

    @classmethod
    def from_bytes(cls, data: bytes) -> CodeExtents:
        """Inverse of `to_bytes`; raises ValueError on a short or inconsistent buffer."""
        if len(data) < 24:
            raise ValueError("extents truncated")
        nsec, nsym, nnames = struct.unpack_from("<QQQ", data)
        if len(data) != 24 + 16 * nsec + 24 * nsym + nnames:
            raise ValueError("extents size mismatch")
        arrays = []
        off = 24
        for count in (2 * nsec, nsym, nsym, nsym):
            arr = array("Q")
            arr.frombytes(data[off : off + 8 * count])
            arrays.append(arr)
            off += 8 * count
        flat, starts, sizes, name_offsets = arrays
        sections = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return cls(sections, starts, sizes, name_offsets, bytes(data[off:]))


def _build(sections: list[tuple[int, int]], table: dict[int, tuple[int, str]]) -> CodeExtents:
    """Extents from start -> (size, name)."""
    ordered = sorted(table)
    blob = bytearray()
    offsets = array("Q")
    for start in ordered:
        offsets.append(len(blob))
        blob += table[start][1].encode("utf-8", "replace") + b"\0"
    return CodeExtents(
        sections=sections,
        starts=array("Q", ordered),
        sizes=array("Q", (table[s][0] for s in ordered)),
        name_offsets=offsets,
        names=bytes(blob),
    )


def read_code_extents(path: str) -> CodeExtents:
    """Read executable sections and FUNC/IFUNC symbols from .symtab and .dynsym; raises ElfError."""
    try:
        with open(path, "rb") as stream:
            if stream.read(4) != ELF_MAGIC:
                raise ElfError(f"{path}: not an ELF file")
            stream.seek(0)
            return _collect(ELFFile(stream), stream)
    except OSError as exc:
        raise ElfError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (_PyElfError, struct.error, ValueError, KeyError, IndexError) as exc:
        raise ElfError(f"{path}: corrupt ELF file ({exc})") from None


def _collect(elf: ELFFile, stream: BinaryIO) -> CodeExtents:
    headers = [section.header for section in elf.iter_sections()]
    exec_index = {
        i for i, h in enumerate(headers) if h["sh_flags"] & SHF_EXECINSTR and h["sh_size"] and h["sh_addr"]
    }
    sections = sorted(
        (headers[i]["sh_addr"], headers[i]["sh_addr"] + headers[i]["sh_size"]) for i in exec_index
    )
    best: dict[int, tuple[int, int, int, int]] = {}  # start -> (size, binding rank, -table, name offset)
    tables: list[bytes] = []
    layout = _symbol_layout(elf.elfclass, elf.little_endian)
    for header in headers:
        if header["sh_type"] not in ("SHT_SYMTAB", "SHT_DYNSYM") or header["sh_entsize"] != layout.size:
            continue
        link = header["sh_link"]
        if not 0 <= link < len(headers) or headers[link]["sh_type"] != "SHT_STRTAB":
            continue
        stream.seek(header["sh_offset"])
        raw = stream.read(header["sh_size"] - header["sh_size"] % layout.size)
        stream.seek(headers[link]["sh_offset"])
        tables.append(stream.read(headers[link]["sh_size"]))
        table = len(tables) - 1
        for name, info, shndx, value, size in _iter_symbols(layout, raw, elf.elfclass):
            if info & 0xF not in (STT_FUNC, STT_GNU_IFUNC) or shndx not in exec_index or not value:
                continue
            candidate = (size, _BIND_RANK.get(info >> 4, 0), -table, name)
            if value not in best or candidate[:3] > best[value][:3]:
                best[value] = candidate
    return _build(sections, {v: (b[0], _cstring(tables[-b[2]], b[3])) for v, b in best.items()})


_BIND_RANK = {1: 3, 2: 2, 0: 1}  # GLOBAL, WEAK, LOCAL: which alias names a shared address


def _cstring(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode("utf-8", "replace")


def _symbol_layout(elfclass: int, little: bool) -> struct.Struct:
    order = "<" if little else ">"
    return struct.Struct(order + ("IBBHQQ" if elfclass == 64 else "IIIBBH"))


def _iter_symbols(layout: struct.Struct, raw: bytes, elfclass: int) -> list[tuple[int, int, int, int, int]]:
    """(st_name, st_info, st_shndx, st_value, st_size) for every entry of a symbol table."""
    if elfclass == 64:
        return [(n, info, shndx, value, size) for n, info, _o, shndx, value, size in layout.iter_unpack(raw)]
    return [(n, info, shndx, value, size) for n, value, size, info, _o, shndx in layout.iter_unpack(raw)]
