"""Just enough ELF64 little-endian parsing to find unwind sections, fast, over an mmap of the file.

pyelftools is thorough but slow to open 100 MB files; this reads only headers and the sections asked for.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from dataclasses import dataclass

from fleetprof.nativeunwind.errors import UnwindTableError

PT_LOAD = 1
PT_GNU_EH_FRAME = 0x6474E550
PF_X = 1
SHT_NOBITS = 8
SHF_COMPRESSED = 0x800
ELFCOMPRESS_ZLIB = 1
ET_REL = 1
EM_X86_64 = 62
MAX_SECTION_BYTES = 1 << 30
"""Unwind sections larger than this are treated as corrupt (absurd sizes must not exhaust memory)."""

_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_CHDR = struct.Struct("<IIQQ")


@dataclass(frozen=True, slots=True)
class Segment:
    """One program header."""

    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


@dataclass(frozen=True, slots=True)
class Section:
    """One section header, name resolved."""

    name: str
    type: int
    flags: int
    addr: int
    offset: int
    size: int


class ElfView:
    """An opened ELF file: headers parsed, section data read on demand."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise UnwindTableError(f"{path}: cannot open ({exc.strerror or exc})", transient=True) from None
        try:
            size = os.fstat(fd).st_size
            if size < _EHDR.size:
                raise UnwindTableError(f"{path}: too short for an ELF header ({size} bytes)")
            self._map = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise UnwindTableError(f"{path}: cannot map ({exc})", transient=True) from None
        finally:
            os.close(fd)
        self.size = size
        self._parse_headers()

    def close(self) -> None:
        """Unmap the file."""
        self._map.close()

    def __enter__(self) -> ElfView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _parse_headers(self) -> None:
        """Read the ELF header, program headers and (when present and sane) section headers."""
        m = self._map
        path = self.path
        (
            ident,
            etype,
            machine,
            _ver,
            _entry,
            phoff,
            shoff,
            _fl,
            _eh,
            phentsize,
            phnum,
            shentsize,
            shnum,
            shstrndx,
        ) = _EHDR.unpack_from(m, 0)
        if ident[:4] != b"\x7fELF":
            raise UnwindTableError(f"{path}: not an ELF file")
        if ident[4] != 2 or ident[5] != 1:
            raise UnwindTableError(f"{path}: not a 64-bit little-endian ELF file")
        if machine != EM_X86_64:
            raise UnwindTableError(f"{path}: machine {machine} is not x86-64")
        self.elf_type = etype
        self.segments: list[Segment] = []
        if phnum and phentsize >= _PHDR.size and phoff + phnum * phentsize <= self.size:
            for i in range(phnum):
                ptype, pflags, off, vaddr, _pa, filesz, memsz, _al = _PHDR.unpack_from(
                    m, phoff + i * phentsize
                )
                self.segments.append(Segment(ptype, pflags, off, vaddr, filesz, memsz))
        self.sections: dict[str, Section] = {}
        if not shnum or shentsize < _SHDR.size or shoff + shnum * shentsize > self.size:
            return
        raw = [_SHDR.unpack_from(m, shoff + i * shentsize) for i in range(shnum)]
        if shstrndx >= shnum:
            return
        str_off, str_size = raw[shstrndx][4], raw[shstrndx][5]
        if str_off + str_size > self.size:
            return
        strtab = m[str_off : str_off + str_size]
        for name_off, stype, sflags, addr, off, ssize, *_ in raw:
            end = strtab.find(b"\0", name_off)
            if name_off >= len(strtab) or end < 0:
                continue
            name = strtab[name_off:end].decode("latin-1")
            self.sections.setdefault(name, Section(name, stype, sflags, addr, off, ssize))

    def exec_span(self) -> tuple[int, int]:
        """[lowest, highest) virtual address of the executable PT_LOAD segments, (0, 0) if none."""
        spans = [(s.vaddr, s.vaddr + s.memsz) for s in self.segments if s.type == PT_LOAD and s.flags & PF_X]
        if not spans:
            return (0, 0)
        return (min(lo for lo, _ in spans), max(hi for _, hi in spans))

    def exec_bytes(self) -> int:
        """Total size of the executable PT_LOAD segments."""
        return sum(s.memsz for s in self.segments if s.type == PT_LOAD and s.flags & PF_X)

    def segment(self, ptype: int) -> Segment | None:
        """The first program header of type `ptype`."""
        for seg in self.segments:
            if seg.type == ptype:
                return seg
        return None

    def vaddr_extent(self, vaddr: int) -> tuple[int, int] | None:
        """File offset of `vaddr` and the number of file bytes from there to the end of its PT_LOAD."""
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                off = seg.offset + (vaddr - seg.vaddr)
                return (off, min(seg.offset + seg.filesz, self.size) - off)
        return None

    def read(self, offset: int, size: int) -> bytes:
        """File bytes [offset, offset + size), checked against the file size."""
        if offset < 0 or size < 0 or offset + size > self.size:
            raise UnwindTableError(f"{self.path}: range {offset:#x}+{size:#x} lies outside the file")
        return self._map[offset : offset + size]

    def section_data(self, name: str) -> bytes | None:
        """Contents of section `name` (decompressed), None when absent or without file data."""
        sec = self.sections.get(name)
        if sec is None or sec.type == SHT_NOBITS or sec.size == 0:
            return None
        if sec.size > MAX_SECTION_BYTES:
            raise UnwindTableError(f"{self.path}: section {name} has an absurd size ({sec.size} bytes)")
        data = self.read(sec.offset, sec.size)
        if sec.flags & SHF_COMPRESSED:
            return self._decompress(name, data)
        if name.startswith(".zdebug"):
            if data[:4] != b"ZLIB" or len(data) < 12:
                raise UnwindTableError(f"{self.path}: section {name} has a bad ZLIB header")
            return self._inflate(name, data[12:], int.from_bytes(data[4:12], "big"))
        return data

    def _decompress(self, name: str, data: bytes) -> bytes:
        """Inflate an SHF_COMPRESSED section (zlib only: zstd would need a package the agent lacks)."""
        if len(data) < _CHDR.size:
            raise UnwindTableError(f"{self.path}: section {name} has a truncated compression header")
        ctype, _res, size, _align = _CHDR.unpack_from(data, 0)
        if ctype != ELFCOMPRESS_ZLIB:
            raise UnwindTableError(f"{self.path}: section {name} uses unsupported compression type {ctype}")
        return self._inflate(name, data[_CHDR.size :], size)

    def _inflate(self, name: str, data: bytes, size: int) -> bytes:
        """zlib-inflate exactly `size` bytes, refusing absurd sizes before allocating."""
        if size > MAX_SECTION_BYTES:
            raise UnwindTableError(f"{self.path}: section {name} claims an absurd size ({size} bytes)")
        try:
            out = zlib.decompressobj().decompress(data, size)
        except zlib.error as exc:
            raise UnwindTableError(f"{self.path}: section {name} does not inflate ({exc})") from None
        if len(out) != size:
            raise UnwindTableError(f"{self.path}: section {name} inflates to {len(out)}, not {size} bytes")
        return out
