"""Name PLT stubs (`write@plt`) the way objdump does: each stub's `jmp *disp(%rip)` names a GOT slot, and the
dynamic relocation of that slot names the symbol. Covers .plt, .plt.sec (IBT) and .plt.got.

Relocations and symbols are read raw: pyelftools' per-symbol objects would cost ~0.5 s on a large library."""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

from fleetprof.elf.view import ElfError, ElfView

PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")
_JMP_RIP = b"\xff\x25"  # jmp *disp32(%rip), optionally after bnd (f2) or endbr64
_DISP = struct.Struct("<i")


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


def _slot_names(elf: ElfView, wanted: set[int]) -> dict[int, str]:
    """GOT slot address -> symbol name for the `wanted` slots, from the raw dynamic relocations."""
    out: dict[int, str] = {}
    for relocs in elf.relocation_tables():
        symbols = relocs.symbols
        for r_offset, r_info, _ in relocs.entries():
            if r_offset not in wanted:
                continue
            index = relocs.symbol_index(r_info)
            entry = symbols.entry(index) if index else None
            name = symbols.string(entry[0]) if entry is not None else ""
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
        with ElfView(path) as elf:
            if elf.elf_class != 64 or not elf.little_endian:
                return out
            stubs: list[tuple[int, int, int]] = []  # start, end, GOT slot
            for sec in (s for s in map(elf.sections.get, PLT_SECTIONS) if s is not None):
                data = elf.section_data(sec) or b""
                base = sec.addr
                size = _stub_size(sec.name, data)
                for off in range(0, len(data) - size + 1, size):
                    stub = data[off : off + size]
                    at = stub.find(_JMP_RIP)
                    if at < 0 or at + 6 > len(stub):
                        continue
                    (disp,) = _DISP.unpack_from(stub, at + 2)
                    stubs.append((base + off, base + off + size, base + off + at + 6 + disp))
            if not stubs:
                return out
            slots = _slot_names(elf, {slot for _, _, slot in stubs})
            entries = [(start, end, f"{slots[slot]}@plt") for start, end, slot in stubs if slot in slots]
    except ElfError:
        return PltNames()
    for start, end, name in sorted(entries):
        out.starts.append(start)
        out.ends.append(end)
        out.names.append(name)
    return out
