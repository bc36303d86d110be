"""Name PLT stubs (`write@plt`) the way objdump does: each stub's `jmp *disp(%rip)` names a GOT slot, and the
dynamic relocation of that slot names the symbol. Covers .plt, .plt.sec (IBT) and .plt.got."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")
_JMP_RIP = b"\xff\x25"  # jmp *disp32(%rip), optionally after bnd (f2) or endbr64


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


def _slot_names(elf: ELFFile) -> dict[int, str]:
    """GOT slot address -> symbol name, from the dynamic relocations."""
    out: dict[int, str] = {}
    for sec in elf.iter_sections():
        if not isinstance(sec, RelocationSection) or not sec.name.startswith((".rela", ".rel")):
            continue
        try:
            symtab = elf.get_section(sec["sh_link"])
        except (ELFError, IndexError):
            continue
        if symtab is None or not hasattr(symtab, "get_symbol"):
            continue
        for rel in sec.iter_relocations():
            index = rel["r_info_sym"]
            if index:
                name = symtab.get_symbol(index).name
                if name:
                    out[rel["r_offset"]] = name.partition("@")[0]
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
            sections = [s for s in (elf.get_section_by_name(n) for n in PLT_SECTIONS) if s is not None]
            if not sections:
                return out
            slots = _slot_names(elf)
            entries: list[tuple[int, int, str]] = []
            for sec in sections:
                data = sec.data()
                base = sec["sh_addr"]
                size = _stub_size(sec.name, data)
                for off in range(0, len(data) - size + 1, size):
                    stub = data[off : off + size]
                    at = stub.find(_JMP_RIP)
                    if at < 0 or at + 6 > len(stub):
                        continue
                    (disp,) = struct.unpack_from("<i", stub, at + 2)
                    name = slots.get(base + off + at + 6 + disp)
                    if name:
                        entries.append((base + off, base + off + size, f"{name}@plt"))
    except (OSError, ELFError, struct.error, ValueError, KeyError, AttributeError):
        return PltNames()
    for start, end, name in sorted(entries):
        out.starts.append(start)
        out.ends.append(end)
        out.names.append(name)
    return out
