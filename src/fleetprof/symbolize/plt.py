"""Name PLT stubs (`write@plt`) the way objdump does: each stub's `jmp *disp(%rip)` names a GOT slot, and the
dynamic relocation of that slot names the symbol. Covers .plt, .plt.sec (IBT) and .plt.got."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import BinaryIO

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile

PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")
_JMP_RIP = b"\xff\x25"  # jmp *disp32(%rip), optionally after bnd (f2) or endbr64
_RELA = struct.Struct("<QQq")  # Elf64_Rela
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym


@dataclass(slots=True)
class PltNames:
    """Sorted PLT stub ranges of one file and the function each one jumps to."""

    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def lookup(self, addr: int) -> str | None:
        """`name@plt` for an address inside a stub, or None."""
        i = bisect.bisect_right(self.starts, addr) - 1
        if i >= 0 and addr < self.ends[i]:
            return self.names[i]
        return None


def _slot_names(elf: ELFFile, stream: BinaryIO, wanted: set[int]) -> dict[int, str]:
    """GOT slot address -> symbol name for the `wanted` slots, from the raw dynamic relocations (RELA only,
    64-bit: what x86-64 uses); pyelftools' per-symbol objects would cost ~0.5 s on a large library."""
    out: dict[int, str] = {}
    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_RELA" or sec["sh_entsize"] != _RELA.size:
            continue
        symtab = elf.get_section(sec["sh_link"])
        if symtab is None or symtab["sh_entsize"] != _SYM.size:
            continue
        strtab = elf.get_section(symtab["sh_link"])
        if strtab is None:
            continue
        stream.seek(sec["sh_offset"])
        relocs = stream.read(sec["sh_size"] - sec["sh_size"] % _RELA.size)
        stream.seek(symtab["sh_offset"])
        syms = stream.read(symtab["sh_size"])
        stream.seek(strtab["sh_offset"])
        names = stream.read(strtab["sh_size"])
        for r_offset, r_info, _ in _RELA.iter_unpack(relocs):
            index = r_info >> 32
            if r_offset not in wanted or not index or (index + 1) * _SYM.size > len(syms):
                continue
            (name_off,) = _SYM.unpack_from(syms, index * _SYM.size)[:1]
            end = names.find(b"\0", name_off)
            name = names[name_off : end if end >= 0 else len(names)].decode("utf-8", "replace")
            if name:
                out[r_offset] = name.partition("@")[0]
    return out


def _stub_size(name: str, data: bytes) -> int:
    if name == ".plt.got":
        return 16 if len(data) % 16 == 0 and data[:4] == b"\xf3\x0f\x1e\xfa" else 8
    return 16


def read_plt_names(path: str) -> PltNames:
    """The PLT stubs of the ELF file at `path`; empty for files without them or that can't be parsed."""
    out = PltNames()
    try:
        with open(path, "rb") as stream:
            elf = ELFFile(stream)
            if elf.elfclass != 64:
                return out
            stubs: list[tuple[int, int, int]] = []  # start, end, GOT slot
            for sec in (s for s in (elf.get_section_by_name(n) for n in PLT_SECTIONS) if s is not None):
                data = sec.data()
                base = sec["sh_addr"]
                size = _stub_size(sec.name, data)
                for off in range(0, len(data) - size + 1, size):
                    stub = data[off : off + size]
                    at = stub.find(_JMP_RIP)
                    if at < 0 or at + 6 > len(stub):
                        continue
                    (disp,) = struct.unpack_from("<i", stub, at + 2)
                    stubs.append((base + off, base + off + size, base + off + at + 6 + disp))
            if not stubs:
                return out
            slots = _slot_names(elf, stream, {slot for _, _, slot in stubs})
            entries = [(start, end, f"{slots[slot]}@plt") for start, end, slot in stubs if slot in slots]
    except (OSError, ELFError, struct.error, ValueError, KeyError, AttributeError):
        return PltNames()
    for start, end, name in sorted(entries):
        out.starts.append(start)
        out.ends.append(end)
        out.names.append(name)
    return out
