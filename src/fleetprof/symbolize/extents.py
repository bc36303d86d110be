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
from itertools import accumulate

from fleetprof.elf.view import SHF_EXECINSTR, STT_FUNC, STT_GNU_IFUNC, ElfError, ElfView


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
        i = self.containing_index(addr)
        return (self.starts[i], self.name_at(i)) if i >= 0 else None

    def containing_index(self, addr: int) -> int:
        """Position of the sized function symbol that contains `addr`, or -1."""
        starts, sizes = self.starts, self.sizes
        idx = bisect.bisect_right(starts, addr) - 1
        for i in range(idx, max(idx - 8, -1), -1):  # a few back: a large symbol may enclose small ones
            if addr < starts[i] + sizes[i]:
                return i
        return -1

    def name_at(self, index: int) -> str:
        """Name of the symbol at position `index`."""
        return self._raw_name_at(index).decode("utf-8", "replace")

    def _raw_name_at(self, index: int) -> bytes:
        off = self.name_offsets[index]
        end = self.names.find(b"\0", off)
        return self.names[off : end if end >= 0 else len(self.names)]

    def merged(self, other: CodeExtents) -> CodeExtents:
        """Union of two files' symbols (a binary and its debug file); sections from whichever has them."""
        table: dict[int, tuple[int, bytes]] = {}
        for ext in (self, other):
            for i, start in enumerate(ext.starts):
                if start not in table or ext.sizes[i] > table[start][0]:
                    table[start] = (ext.sizes[i], ext._raw_name_at(i))
        return _build(self.sections or other.sections, table)

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


def _build(sections: list[tuple[int, int]], table: dict[int, tuple[int, bytes]]) -> CodeExtents:
    """Extents from start -> (size, UTF-8 name)."""
    ordered = sorted(table)
    picked = [table[start] for start in ordered]
    names = [name for _, name in picked]
    return CodeExtents(
        sections=sections,
        starts=array("Q", ordered),
        sizes=array("Q", [size for size, _ in picked]),
        name_offsets=array("Q", [0, *accumulate([len(name) + 1 for name in names[:-1]])] if names else []),
        names=b"\0".join(names) + b"\0" if names else b"",
    )


def read_code_extents(path: str) -> CodeExtents:
    """Read executable sections and FUNC/IFUNC symbols from .symtab and .dynsym; raises ElfError."""
    with ElfView(path) as elf:
        if elf.problem:
            raise ElfError(f"{path}: corrupt ELF file ({elf.problem})")
        return _collect(elf)


def _collect(elf: ElfView) -> CodeExtents:
    exec_index = {s.index for s in elf.section_list if s.flags & SHF_EXECINSTR and s.size and s.addr}
    sections = sorted((s.addr, s.addr + s.size) for s in elf.section_list if s.index in exec_index)
    best: dict[int, tuple[int, int, int, int]] = {}  # start -> (size, binding rank, table, name offset)
    rank_of = _BIND_RANK.get
    tables = elf.symbol_tables()
    for table, symtab in enumerate(tables):
        functions = [e for e in symtab.entries() if e[1] & 0xF in _FUNC_KINDS and e[2] in exec_index and e[3]]
        for name, info, _shndx, value, size in functions:
            rank = rank_of(info >> 4, 0)
            held = best.get(value)
            if held is None or size > held[0] or (size == held[0] and rank > held[1]):  # ties: earlier table
                best[value] = (size, rank, table, name)
    strings = [symtab.strings + b"\0" for symtab in tables]  # a NUL at the end: `find` always succeeds
    named = {
        start: (b[0], strings[b[2]][b[3] : strings[b[2]].find(b"\0", b[3])]) for start, b in best.items()
    }
    if not all(s.isascii() for s in strings):  # as a UTF-8 decode/encode round trip would leave them
        named = {start: (size, _utf8(raw)) for start, (size, raw) in named.items()}
    return _build(sections, named)


def _utf8(raw: bytes) -> bytes:
    """`raw` with invalid UTF-8 sequences replaced by U+FFFD."""
    return raw if raw.isascii() else raw.decode("utf-8", "replace").encode()


_BIND_RANK = {1: 3, 2: 2, 0: 1}  # GLOBAL, WEAK, LOCAL: which alias names a shared address
_FUNC_KINDS = frozenset((STT_FUNC, STT_GNU_IFUNC))
