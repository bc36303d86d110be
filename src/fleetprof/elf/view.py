"""The one fast ELF reader: headers, segments, sections (compressed too), bytes at an address, raw symbol
tables and dynamic relocations, for ELF32 and ELF64 of either byte order.

Reads go through pread on an open descriptor, never mmap (a file truncated under a mapping raises SIGBUS),
and only what is asked for is read: opening a 100 MB file reads its headers. Every read is checked against
the file size; malformed or truncated files raise `ElfError` with one line naming the file.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

ELF_MAGIC = b"\x7fELF"
ET_REL = 1
EM_X86_64 = 62
PT_LOAD = 1
PT_NOTE = 4
PT_GNU_EH_FRAME = 0x6474E550
PF_X = 1
SHT_SYMTAB = 2
SHT_STRTAB = 3
SHT_RELA = 4
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHF_EXECINSTR = 0x4
SHF_COMPRESSED = 0x800
SHN_UNDEF = 0
SHN_XINDEX = 0xFFFF
PN_XNUM = 0xFFFF
STT_OBJECT = 1
STT_FUNC = 2
STT_GNU_IFUNC = 10
ELFCOMPRESS_ZLIB = 1
NT_GNU_BUILD_ID = 3
MAX_SECTION_BYTES = 1 << 30
"""Sections larger than this are treated as corrupt (absurd sizes must not exhaust memory)."""

ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}
EM_NAMES = {0: "EM_NONE", 3: "EM_386", 40: "EM_ARM", 62: "EM_X86_64", 183: "EM_AARCH64", 243: "EM_RISCV"}
_DEFINED_KINDS = (STT_FUNC, STT_OBJECT)


class ElfError(Exception):
    """The file is not a usable ELF file; the message is one line naming the file and the reason.

    `transient` marks failures to read the file (open, I/O) rather than problems with its content.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class _Layout(NamedTuple):
    """Struct layouts of one ELF class and byte order."""

    ehdr: struct.Struct
    phdr: struct.Struct
    shdr: struct.Struct
    chdr: struct.Struct  # compression header, unused fields as padding: (ch_type, ch_size)
    sym: struct.Struct  # Elf_Sym with st_other as padding, in the file's field order
    rela: struct.Struct
    word: struct.Struct
    phdr_fields: tuple[int, ...]  # where type, flags, offset, vaddr, filesz, memsz, align sit in `phdr`
    rela_sym_shift: int


_FORMATS = {  # EI_CLASS: (struct formats as in _Layout, phdr_fields, rela_sym_shift)
    2: (
        ("16sHHIQQQIHHHHHH", "IIQQQQQQ", "IIQQQQIIQQ", "I4xQ8x", "IBxHQQ", "QQq", "I"),
        (0, 1, 2, 3, 5, 6, 7),
        32,
    ),
    1: (
        ("16sHHIIIIIHHHHHH", "IIIIIIII", "IIIIIIIIII", "II4x", "IIIBxH", "IIi", "I"),
        (0, 6, 1, 2, 4, 5, 7),
        8,
    ),
}
_LAYOUTS = {
    (cls, data): _Layout(*(struct.Struct(order + f) for f in formats), fields, shift)
    for cls, (formats, fields, shift) in _FORMATS.items()
    for data, order in ((1, "<"), (2, ">"))
}


@dataclass(frozen=True, slots=True)
class Segment:
    """One program header."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int = 0


@dataclass(frozen=True, slots=True)
class Section:
    """One section header with its name resolved ("" when the file has no usable name table)."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int
    link: int = 0
    info: int = 0
    entsize: int = 0
    index: int = 0


@dataclass(frozen=True, slots=True)
class Symbol:
    """A defined symbol found by name: ELF virtual address, size and the table it came from."""

    value: int
    size: int
    table: str  # ".dynsym" or ".symtab"


SymbolEntry = tuple[int, int, int, int, int]
"""(st_name, st_info, st_shndx, st_value, st_size) of one raw symbol-table entry."""


class SymbolTable:
    """One symbol table (`.symtab`, `.dynsym`): its raw entries and the string table names index into."""

    __slots__ = ("_elf64", "_sym", "data", "name", "strings")

    def __init__(self, name: str, data: bytes, strings: bytes, sym: struct.Struct) -> None:
        self.name = name
        self.data = data[: len(data) - len(data) % sym.size]
        self.strings = strings
        self._sym = sym
        self._elf64 = sym.size == 24

    def __len__(self) -> int:
        return len(self.data) // self._sym.size

    def entries(self) -> Iterator[SymbolEntry]:
        """Every entry in table order, the null symbol at index 0 included."""
        raw = self._sym.iter_unpack(self.data)
        if self._elf64:
            return raw  # "IBxHQQ" unpacks in SymbolEntry order
        return ((name, info, shndx, value, size) for name, value, size, info, shndx in raw)

    def entry(self, index: int) -> SymbolEntry | None:
        """Entry `index`, None when out of range."""
        if not 0 <= index < len(self):
            return None
        fields = self._sym.unpack_from(self.data, index * self._sym.size)
        if self._elf64:
            return fields
        name, value, size, info, shndx = fields
        return (name, info, shndx, value, size)

    def string(self, offset: int) -> str:
        """The NUL-terminated name at `offset` (UTF-8, invalid bytes replaced); "" when outside the table."""
        strings = self.strings
        end = strings.find(b"\0", offset)
        return strings[offset : end if end >= 0 else len(strings)].decode("utf-8", "replace")


class RelocationTable:
    """One SHT_RELA section: raw (r_offset, r_info, r_addend) entries and the symbol table they refer to."""

    __slots__ = ("_rela", "_shift", "data", "name", "symbols")

    def __init__(self, name: str, data: bytes, symbols: SymbolTable, rela: struct.Struct, shift: int) -> None:
        self.name = name
        self.data = data[: len(data) - len(data) % rela.size]
        self.symbols = symbols
        self._rela = rela
        self._shift = shift

    def entries(self) -> Iterator[tuple[int, int, int]]:
        """(r_offset, r_info, r_addend) of every relocation, in table order."""
        return self._rela.iter_unpack(self.data)

    def symbol_index(self, info: int) -> int:
        """The symbol-table index packed into `r_info`."""
        return info >> self._shift


class ElfView:
    """An open ELF file: headers parsed on open, everything else read on demand.

    Header tables that are missing or lie outside the file are left empty and described in `problem`
    (callers that need them decide whether that is fatal), so stripped or damaged headers still yield
    whatever the rest of the file offers.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.problem = ""
        self.segments: list[Segment] = []
        self.section_list: list[Section] = []
        self.sections: dict[str, Section] = {}  # the first section of each name
        self._symbol_tables: dict[int, SymbolTable | None] = {}
        try:
            self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close(), or when collected
            self._fd = self._file.fileno()
            self.size = os.fstat(self._fd).st_size
        except OSError as exc:
            raise ElfError(f"{path}: cannot open ({exc.strerror or exc})", transient=True) from None
        try:
            self._parse_headers()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def __enter__(self) -> ElfView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pread(self, offset: int, size: int) -> bytes:
        try:
            return os.pread(self._fd, size, offset)
        except OSError as exc:
            raise ElfError(f"{self.path}: cannot read ({exc.strerror or exc})", transient=True) from None

    def _parse_headers(self) -> None:
        """Read the ELF header, program headers and (when present and sane) section headers."""
        path = self.path
        head = self._pread(0, 64)
        if head[:4] != ELF_MAGIC:
            raise ElfError(f"{path}: not an ELF file")
        if len(head) < 52:
            raise ElfError(f"{path}: too short for an ELF header ({self.size} bytes)")
        layout = _LAYOUTS.get((head[4], head[5]))
        if layout is None:
            raise ElfError(f"{path}: corrupt ELF header (class {head[4]}, data encoding {head[5]})")
        if len(head) < layout.ehdr.size:
            raise ElfError(f"{path}: too short for an ELF header ({self.size} bytes)")
        self._layout = layout
        self.elf_class = 64 if head[4] == 2 else 32
        self.little_endian = head[5] == 1
        (_ident, etype, machine, _ver, _entry, phoff, shoff, _fl, _eh, phentsize, phnum, shentsize, shnum,
         shstrndx) = layout.ehdr.unpack_from(head)  # fmt: skip
        self.elf_type = etype
        self.machine = machine
        first = (
            self._first_section(shoff, shentsize)
            if not shnum or shstrndx == SHN_XINDEX or phnum == PN_XNUM
            else None
        )
        if first is not None:
            shnum = shnum or first[5]
            shstrndx = first[6] if shstrndx == SHN_XINDEX else shstrndx
            phnum = first[7] if phnum == PN_XNUM else phnum
        self._read_segments(phoff, phentsize, phnum)
        self._read_sections(shoff, shentsize, shnum, shstrndx)

    def _first_section(self, shoff: int, shentsize: int) -> tuple[int, ...] | None:
        """Section header 0, which holds the real counts when the ELF header's fields overflow."""
        shdr = self._layout.shdr
        if not shoff or shentsize < shdr.size or shoff + shdr.size > self.size:
            return None
        raw = self._pread(shoff, shdr.size)
        return shdr.unpack(raw) if len(raw) == shdr.size else None

    def _table(self, what: str, offset: int, entsize: int, count: int, minsize: int) -> bytes | None:
        """The raw bytes of a header table, None (and `problem` set) when it is malformed."""
        if entsize < minsize:
            self.problem = self.problem or f"{what} entries of {entsize} bytes"
            return None
        end = offset + count * entsize
        raw = self._pread(offset, count * entsize) if end <= self.size else b""
        if len(raw) != count * entsize:
            self.problem = self.problem or f"{what} lie outside the file"
            return None
        return raw

    def _read_segments(self, phoff: int, phentsize: int, phnum: int) -> None:
        phdr = self._layout.phdr
        raw = self._table("program headers", phoff, phentsize, phnum, phdr.size) if phnum else None
        if raw is None:
            return
        t, f, o, v, fs, ms, a = self._layout.phdr_fields
        for i in range(phnum):
            h = phdr.unpack_from(raw, i * phentsize)
            self.segments.append(Segment(h[t], h[f], h[o], h[v], h[fs], h[ms], h[a]))

    def _read_sections(self, shoff: int, shentsize: int, shnum: int, shstrndx: int) -> None:
        shdr = self._layout.shdr
        raw = self._table("section headers", shoff, shentsize, shnum, shdr.size) if shoff and shnum else None
        if raw is None:
            return
        headers = [shdr.unpack_from(raw, i * shentsize) for i in range(shnum)]
        names = b""
        if shstrndx < shnum:
            str_off, str_size = headers[shstrndx][4], headers[shstrndx][5]
            if str_off + str_size <= self.size and str_size <= MAX_SECTION_BYTES:
                names = self._pread(str_off, str_size)
        elif shstrndx != SHN_UNDEF:
            self.problem = self.problem or f"section name table index {shstrndx} out of range"
        for index, (name_off, stype, sflags, addr, off, ssize, link, info, _al, entsize) in enumerate(
            headers
        ):
            end = names.find(b"\0", name_off) if name_off < len(names) else -1
            name = names[name_off:end].decode("latin-1") if end >= 0 else ""
            sec = Section(name, stype, sflags, addr, off, ssize, link, info, entsize, index)
            self.section_list.append(sec)
            if name:
                self.sections.setdefault(name, sec)

    def segment(self, ptype: int) -> Segment | None:
        """The first program header of type `ptype`."""
        for seg in self.segments:
            if seg.type == ptype:
                return seg
        return None

    def loads(self) -> list[Segment]:
        """The PT_LOAD program headers, in file order."""
        return [s for s in self.segments if s.type == PT_LOAD]

    def exec_span(self) -> tuple[int, int]:
        """[lowest, highest) virtual address of the executable PT_LOAD segments, (0, 0) if none."""
        spans = [(s.vaddr, s.vaddr + s.memsz) for s in self.segments if s.type == PT_LOAD and s.flags & PF_X]
        if not spans:
            return (0, 0)
        return (min(lo for lo, _ in spans), max(hi for _, hi in spans))

    def exec_bytes(self) -> int:
        """Total size of the executable PT_LOAD segments."""
        return sum(s.memsz for s in self.segments if s.type == PT_LOAD and s.flags & PF_X)

    def vaddr_extent(self, vaddr: int) -> tuple[int, int] | None:
        """File offset of `vaddr` and the number of file bytes from there to the end of its PT_LOAD."""
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                off = seg.offset + (vaddr - seg.vaddr)
                return (off, min(seg.offset + seg.filesz, self.size) - off)
        return None

    def read(self, offset: int, size: int) -> bytes:
        """File bytes [offset, offset + size); raises ElfError when they are not all in the file."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfError(f"{self.path}: range {offset:#x}+{size:#x} lies outside the file")
        data = self._pread(offset, size)
        if len(data) != size:
            raise ElfError(f"{self.path}: file ends before {offset + size:#x} (truncated while read)")
        return data

    def read_vaddr(self, vaddr: int, size: int) -> bytes | None:
        """`size` bytes of the file image at virtual address `vaddr`; None unless one PT_LOAD backs them."""
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr and vaddr + size <= seg.vaddr + seg.filesz:
                offset = seg.offset + vaddr - seg.vaddr
                if offset < 0 or size < 0 or offset + size > self.size:
                    return None
                data = self._pread(offset, size)
                return data if len(data) == size else None
        return None

    def section_data(self, section: str | Section) -> bytes | None:
        """Contents of a section (by name or header), decompressed; None when absent or without file data."""
        sec = self.sections.get(section) if isinstance(section, str) else section
        if sec is None or sec.type == SHT_NOBITS or sec.size == 0:
            return None
        name = sec.name or f"[{sec.index}]"
        if sec.size > MAX_SECTION_BYTES:
            raise ElfError(f"{self.path}: section {name} has an absurd size ({sec.size} bytes)")
        data = self.read(sec.offset, sec.size)
        if sec.flags & SHF_COMPRESSED:
            return self._decompress(name, data)
        if sec.name.startswith(".zdebug"):
            if data[:4] != b"ZLIB" or len(data) < 12:
                raise ElfError(f"{self.path}: section {name} has a bad ZLIB header")
            return self._inflate(name, data[12:], int.from_bytes(data[4:12], "big"))
        return data

    def _decompress(self, name: str, data: bytes) -> bytes:
        """Inflate an SHF_COMPRESSED section (zlib only: zstd would need a package the agent lacks)."""
        chdr = self._layout.chdr
        if len(data) < chdr.size:
            raise ElfError(f"{self.path}: section {name} has a truncated compression header")
        ctype, size = chdr.unpack_from(data)
        if ctype != ELFCOMPRESS_ZLIB:
            raise ElfError(f"{self.path}: section {name} uses unsupported compression type {ctype}")
        return self._inflate(name, data[chdr.size :], size)

    def _inflate(self, name: str, data: bytes, size: int) -> bytes:
        """zlib-inflate exactly `size` bytes, refusing absurd sizes before allocating."""
        if size > MAX_SECTION_BYTES:
            raise ElfError(f"{self.path}: section {name} claims an absurd size ({size} bytes)")
        try:
            out = zlib.decompressobj().decompress(data, size)
        except zlib.error as exc:
            raise ElfError(f"{self.path}: section {name} does not inflate ({exc})") from None
        if len(out) != size:
            raise ElfError(f"{self.path}: section {name} inflates to {len(out)}, not {size} bytes")
        return out

    def symbol_tables(self) -> list[SymbolTable]:
        """Every usable SHT_SYMTAB and SHT_DYNSYM, in section order (read once, then kept)."""
        tables = (
            self._symbol_table_at(s.index) for s in self.section_list if s.type in (SHT_SYMTAB, SHT_DYNSYM)
        )
        return [t for t in tables if t is not None]

    def symbol_table(self, name: str) -> SymbolTable | None:
        """The symbol table called `name` (".symtab", ".dynsym"), None when absent or unusable."""
        sec = self.sections.get(name)
        return None if sec is None else self._symbol_table_at(sec.index)

    def _symbol_table_at(self, index: int) -> SymbolTable | None:
        """The symbol table in section `index`, when its type, entry size and string table are sound."""
        if index in self._symbol_tables:
            return self._symbol_tables[index]
        table = None
        secs = self.section_list
        sym = self._layout.sym
        sec = secs[index] if 0 <= index < len(secs) else None
        if sec is not None and sec.type in (SHT_SYMTAB, SHT_DYNSYM) and sec.entsize == sym.size:
            strtab = secs[sec.link] if 0 < sec.link < len(secs) else None
            if strtab is not None and strtab.type == SHT_STRTAB:
                data = self.section_data(sec) or b""
                table = SymbolTable(sec.name, data, self.section_data(strtab) or b"", sym)
        self._symbol_tables[index] = table
        return table

    def symbols(self, names: Iterable[str]) -> dict[str, Symbol]:
        """Defined FUNC/OBJECT symbols among `names`; .symtab wins over .dynsym (it has locals and sizes)."""
        wanted = set(names)
        found: dict[str, Symbol] = {}
        for table_name in (".dynsym", ".symtab"):
            table = self.symbol_table(table_name)
            if table is None:
                continue
            # Linkers share string tails ("_PyRuntime" may end "foo_PyRuntime"): any match can be a name.
            offsets = {
                match.start(): name
                for name in wanted
                for match in re.finditer(re.escape(name.encode()) + b"\0", table.strings)
            }
            if not offsets:
                continue
            for st_name, info, shndx, value, size in [e for e in table.entries() if e[0] in offsets]:
                if shndx != SHN_UNDEF and (info & 0xF) in _DEFINED_KINDS:
                    found[offsets[st_name]] = Symbol(value, size, table_name)
        return found

    def relocation_tables(self) -> list[RelocationTable]:
        """Every SHT_RELA section whose symbol table is usable (x86-64 dynamic relocations are all RELA)."""
        rela = self._layout.rela
        out = []
        for sec in self.section_list:
            if sec.type != SHT_RELA or sec.entsize != rela.size:
                continue
            symbols = self._symbol_table_at(sec.link)
            if symbols is not None:
                data = self.section_data(sec) or b""
                out.append(RelocationTable(sec.name, data, symbols, rela, self._layout.rela_sym_shift))
        return out

    def build_id(self) -> str:
        """The GNU build id in hex, from PT_NOTE segments, else SHT_NOTE sections; "" when there is none."""
        regions = [(s.offset, s.filesz) for s in self.segments if s.type == PT_NOTE]
        regions += [(s.offset, s.size) for s in self.section_list if s.type == SHT_NOTE]
        for offset, size in regions:
            if offset + size > self.size or size > MAX_SECTION_BYTES:
                raise ElfError(f"{self.path}: note at {offset:#x}+{size:#x} lies outside the file")
            found = self._gnu_build_id(self.read(offset, size))
            if found is not None:
                return found.hex()
        return ""

    def _gnu_build_id(self, notes: bytes) -> bytes | None:
        """The descriptor of the first NT_GNU_BUILD_ID note named "GNU" among `notes`."""
        word = self._layout.word
        pos = 0
        while pos + 12 < len(notes):
            namesz, descsz = word.unpack_from(notes, pos)[0], word.unpack_from(notes, pos + 4)[0]
            ntype = word.unpack_from(notes, pos + 8)[0]
            name_at = pos + 12
            desc_at = name_at + (namesz + 3) // 4 * 4
            if ntype == NT_GNU_BUILD_ID and notes[name_at : name_at + namesz].split(b"\0", 1)[0] == b"GNU":
                return notes[desc_at : desc_at + descsz]
            pos = desc_at + (descsz + 3) // 4 * 4
        return None

    def debuglink(self) -> tuple[str, int]:
        """(`.gnu_debuglink` file name, its CRC32); ("", 0) when absent."""
        data = self.section_data(".gnu_debuglink")
        if not data:
            return "", 0
        end = data.find(b"\0")
        name = data[:end].decode("utf-8", "replace") if end > 0 else ""
        crc_at = (end + 4) & ~3
        crc = self._layout.word.unpack_from(data, crc_at)[0] if len(data) >= crc_at + 4 else 0
        return name, crc
