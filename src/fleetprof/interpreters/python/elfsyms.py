"""The few ELF facts CPython discovery needs: named symbols, bytes at an address, executable sections.

Symbol tables are scanned with struct rather than pyelftools' per-symbol objects: a libpython's .symtab has
tens of thousands of entries and discovery must stay well under a second per file.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
_SHN_UNDEF = 0
_STT_FUNC = 2
_STT_OBJECT = 1


@dataclass(frozen=True, slots=True)
class Symbol:
    """A defined symbol: ELF virtual address and size."""

    value: int
    size: int
    table: str  # ".dynsym" or ".symtab"


class ElfImage:
    """An open ELF64 little-endian file with lookups by symbol name and by virtual address."""

    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.elf = ELFFile(stream)
        if self.elf.elfclass != 64 or not self.elf.little_endian:
            raise ELFError("not an ELF64 little-endian file")
        self.loads = [seg for seg in self.elf.iter_segments() if seg["p_type"] == "PT_LOAD"]
        self.has_symtab = self.elf.get_section_by_name(".symtab") is not None

    def symbols(self, names: Iterable[str]) -> dict[str, Symbol]:
        """Defined symbols among `names`, .symtab preferred over .dynsym (it has local symbols and sizes)."""
        wanted = set(names)
        found: dict[str, Symbol] = {}
        for table in (".dynsym", ".symtab"):
            section = self.elf.get_section_by_name(table)
            if section is None or section["sh_entsize"] != _SYM.size:
                continue
            strtab = self.elf.get_section(section["sh_link"]).data()
            # Linkers share string tails ("_PyRuntime" may end "foo_PyRuntime"): any match can be a name.
            offsets = {
                match.start(): name
                for name in wanted
                for match in re.finditer(re.escape(name.encode()) + b"\0", strtab)
            }
            if not offsets:
                continue
            for st_name, info, _other, shndx, value, size in _SYM.iter_unpack(section.data()):
                name = offsets.get(st_name)
                if name is not None and shndx != _SHN_UNDEF and (info & 0xF) in (_STT_FUNC, _STT_OBJECT):
                    found[name] = Symbol(value, size, table)
        return found

    def read(self, vaddr: int, size: int) -> bytes | None:
        """`size` bytes of the file image at ELF virtual address `vaddr`, None if not backed by the file."""
        for seg in self.loads:
            start = seg["p_vaddr"]
            if start <= vaddr and vaddr + size <= start + seg["p_filesz"]:
                self.stream.seek(seg["p_offset"] + vaddr - start)
                data = self.stream.read(size)
                return data if len(data) == size else None
        return None

    def section_data(self, name: str) -> bytes:
        """Contents of section `name`, b"" when absent or without file data."""
        section = self.elf.get_section_by_name(name)
        if section is None or section["sh_type"] == "SHT_NOBITS":
            return b""
        return section.data()
