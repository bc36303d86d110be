"""Find a Go binary's pclntab, text start and `go:func.*` base in its ELF file, stripped or not.

pclntab: the `.gopclntab` section (`.data.rel.ro.gopclntab` in PIE builds), else the `runtime.pcheader`
/ `runtime.pclntab` symbols, else a scan of the loaded data for the header magic (stripped external
links put it inside `.data.rel.ro`). Text start (1.18+) and gofunc: the header's text start when it is
relocated, else `runtime.firstmoduledata`, found by its first word (a pointer to the header, from the
file or from a RELATIVE relocation in PIE) and checked against the header's own offsets.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass

from fleetprof.elf.view import PF_X, SHT_NOBITS, SHT_RELA, ElfError, ElfView
from fleetprof.symbolize.golang.pclntab import MAGIC_118, MAGIC_120, FuncdataReader, Pclntab, PclntabError

_GO_MARKERS = (".gopclntab", ".go.buildinfo", ".note.go.buildid", ".go.module")
_MAGIC_SCAN = re.compile(rb"[\xfb\xfa\xf0\xf1]\xff\xff\xff\x00\x00[\x01\x02\x04][\x04\x08]")
_RELATIVE = {62: 8, 183: 1027, 3: 8, 40: 23}  # e_machine -> R_*_RELATIVE (x86-64, aarch64, i386, arm)
_MODULEDATA_TEXT = 22  # word index of moduledata.text (stable since 1.16: pcHeader + six slices + 3)
_GOFUNC_WORDS = range(36, 48)  # moduledata.gofunc moved as fields were added (1.18: 38, 1.20: 40)
_CHECKED_TREES = 8


@dataclass(frozen=True, slots=True)
class GoLocation:
    """Where the pieces of a Go binary's symbol data are, as ELF virtual addresses."""

    vaddr: int  # pclntab header
    file_offset: int
    size: int  # bytes available from the header on (section size, or to the end of its segment)
    text_start: int | None  # relocated text start for 1.18+, None to use the header's
    gofunc: int  # go:func.* base for 1.18+ inline trees, 0 when unknown (or absolute funcdata before)
    how: str  # "section", "symbol" or "scan"


def is_go_file(elf: ElfView) -> bool:
    """Whether the ELF file looks like a Go binary (a cheap test on section names)."""
    return any(name in elf.sections for name in _GO_MARKERS) or any(
        name.endswith(".gopclntab") for name in elf.sections
    )


class GoElf:
    """An open Go binary: its mmap, pclntab and inline trees; `table` is None when it has no pclntab."""

    def __init__(self, path: str) -> None:
        """Raises ElfError for an unreadable file and PclntabError for a damaged pclntab."""
        self.table: Pclntab | None = None
        self.location: GoLocation | None = None
        self._map: mmap.mmap | None = None
        with ElfView(path) as elf:
            if elf.problem and not elf.segments:
                raise ElfError(f"{path}: corrupt ELF file ({elf.problem})")
            if not is_go_file(elf):
                return
            self._segments = [(s.vaddr, s.offset, s.filesz) for s in elf.loads()]
            try:
                with open(path, "rb") as stream:
                    self._map = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise ElfError(f"{path}: cannot map ({exc})") from None
            self._relocs = _Relocations(elf, self._map)
            self.location, self.table = _locate(elf, self._map, self._relocs, self._read)

    def close(self) -> None:
        """Unmap the file (the table must not be used afterwards)."""
        if self._map is not None:
            self.table = None
            with suppress(BufferError):
                self._map.close()
            self._map = None

    def _read(self, key: int, offset: int, size: int) -> bytes | None:
        """Funcdata reader: bytes at gofunc + key + offset (absolute key before 1.18)."""
        location = self.location
        base = location.gofunc if location is not None and location.gofunc else 0
        return _read_vaddr(self._map, self._segments, base + key + offset, size) if self._map else None


def _read_vaddr(data: mmap.mmap, segments: list[tuple[int, int, int]], vaddr: int, size: int) -> bytes | None:
    for seg_vaddr, offset, filesz in segments:
        if seg_vaddr <= vaddr and vaddr + size <= seg_vaddr + filesz:
            start = offset + vaddr - seg_vaddr
            return data[start : start + size] if start + size <= len(data) else None
    return None


class _Relocations:
    """RELATIVE relocations of a PIE (target address -> addend), read on first use."""

    def __init__(self, elf: ElfView, data: mmap.mmap) -> None:
        self._data = data
        kind = _RELATIVE.get(elf.machine)
        self._tables = [
            (s.offset, s.size) for s in elf.section_list if s.type == SHT_RELA and s.entsize == 24 and kind
        ]
        self._kind = kind
        self._by_target: dict[int, int] | None = None
        self._by_addend: dict[int, list[int]] | None = None

    def _load(self) -> None:
        self._by_target, self._by_addend = {}, {}
        for offset, size in self._tables:
            chunk = self._data[offset : offset + size - size % 24]
            for target, info, addend in struct.iter_unpack("<QQq", chunk):
                if info & 0xFFFFFFFF == self._kind:
                    self._by_target[target] = addend
                    self._by_addend.setdefault(addend, []).append(target)

    def at(self, target: int) -> int | None:
        """The addend relocated into `target`, None when no RELATIVE relocation writes it."""
        if self._by_target is None:
            self._load()
        assert self._by_target is not None
        return self._by_target.get(target)

    def targets_of(self, value: int) -> list[int]:
        """Addresses a RELATIVE relocation fills with `value`."""
        if self._by_addend is None:
            self._load()
        assert self._by_addend is not None
        return self._by_addend.get(value, [])


def _locate(
    elf: ElfView, data: mmap.mmap, relocs: _Relocations, read: FuncdataReader
) -> tuple[GoLocation | None, Pclntab | None]:
    """Find and parse the pclntab; (None, None) when the Go binary has none."""
    found = _find_header(elf, data)
    if found is None:
        return None, None
    vaddr, offset, size, how = found
    magic = struct.unpack_from("<I", data, offset)[0]
    words = _Words(elf, data, relocs)
    moduledata = _moduledata(words, vaddr, elf)
    text_start: int | None = None
    if magic in (MAGIC_118, MAGIC_120):
        ptrsize = data[offset + 7]
        header_at = vaddr + 8 + 2 * ptrsize
        text_start = words.word(header_at) or 0
        if not text_start and moduledata:
            text_start = words.word(moduledata + 8 * _MODULEDATA_TEXT) or 0
        if not text_start and ".text" in elf.sections:
            text_start = elf.sections[".text"].addr
    table = Pclntab(data, offset, size, text_start=text_start, funcdata=read)
    gofunc = 0
    if magic in (MAGIC_118, MAGIC_120):
        gofunc = _gofunc(elf, words, moduledata, table, data)
    location = GoLocation(vaddr, offset, size, text_start, gofunc, how)
    if magic in (MAGIC_118, MAGIC_120) and not gofunc:
        table = Pclntab(data, offset, size, text_start=text_start, funcdata=None)  # no inline trees
    return location, table


def _find_header(elf: ElfView, data: mmap.mmap) -> tuple[int, int, int, str] | None:
    """(vaddr, file offset, size, how found) of the pclntab header."""
    for sec in elf.section_list:
        usable = sec.type != SHT_NOBITS and sec.size >= 16 and sec.offset + sec.size <= len(data)
        if sec.name.endswith(".gopclntab") and usable and _plausible(data, sec.offset):
            return sec.addr, sec.offset, sec.size, "section"
    symbols = elf.symbols(["runtime.pcheader", "runtime.pclntab", "runtime.epclntab"])
    end = symbols.get("runtime.epclntab")
    for name in ("runtime.pcheader", "runtime.pclntab"):
        sym = symbols.get(name)
        extent = elf.vaddr_extent(sym.value) if sym else None
        if sym and extent and _plausible(data, extent[0]):
            size = end.value - sym.value if end and end.value > sym.value else extent[1]
            return sym.value, extent[0], min(size, extent[1]), "symbol"
    for seg in elf.loads():
        if seg.flags & PF_X:
            continue
        stop = min(seg.offset + seg.filesz, len(data))
        for match in _MAGIC_SCAN.finditer(data, seg.offset, stop):
            start = match.start()
            if start % 4:
                continue
            try:
                Pclntab(data, start, stop - start, text_start=1)
            except PclntabError:
                continue
            return seg.vaddr + start - seg.offset, start, stop - start, "scan"
    return None


def _plausible(data: mmap.mmap, offset: int) -> bool:
    return _MAGIC_SCAN.match(data, offset) is not None


class _Words:
    """Pointer-sized words of the loaded image, relocated (PIE) where a RELATIVE relocation writes them."""

    def __init__(self, elf: ElfView, data: mmap.mmap, relocs: _Relocations) -> None:
        self._data = data
        self._relocs = relocs
        self._segments = [(s.vaddr, s.offset, s.filesz, s.memsz, bool(s.flags & PF_X)) for s in elf.loads()]
        self.pie = elf.elf_type == 3

    def word(self, vaddr: int) -> int | None:
        """The 8-byte word at `vaddr`, None when no loaded file data backs it."""
        if self.pie:
            relocated = self._relocs.at(vaddr)
            if relocated is not None:
                return relocated
        for seg_vaddr, offset, filesz, _, _ in self._segments:
            if seg_vaddr <= vaddr and vaddr + 8 <= seg_vaddr + filesz:
                start = offset + vaddr - seg_vaddr
                return (
                    struct.unpack_from("<Q", self._data, start)[0] if start + 8 <= len(self._data) else None
                )
        return None

    def data_segments(self) -> Iterator[tuple[int, int, int]]:
        """(vaddr, file offset, file size) of each loaded segment without code."""
        for seg_vaddr, offset, filesz, _, executable in self._segments:
            if not executable:
                yield seg_vaddr, offset, filesz

    def loaded(self, vaddr: int) -> bool:
        """Whether `vaddr` lies in a loaded segment (linkers like lld put rodata in the code segment)."""
        return any(v <= vaddr < v + memsz for v, _, _, memsz, _ in self._segments)


def _moduledata(words: _Words, pcheader: int, elf: ElfView) -> int:
    """Address of the moduledata that points at `pcheader` (checked by its funcnametab slice), 0 if none."""
    symbol = elf.symbols(["runtime.firstmoduledata"]).get("runtime.firstmoduledata")
    if symbol is not None and words.word(symbol.value) == pcheader:
        return symbol.value
    candidates: list[int] = []
    if words.pie:
        candidates = words._relocs.targets_of(pcheader)
    if not candidates:
        needle = struct.pack("<Q", pcheader)
        for vaddr, offset, filesz in words.data_segments():
            pos = words._data.find(needle, offset, offset + filesz)
            while pos >= 0 and len(candidates) < 64:
                if (pos - offset) % 8 == 0:
                    candidates.append(vaddr + pos - offset)
                pos = words._data.find(needle, pos + 1, offset + filesz)
    for candidate in candidates:
        names = words.word(candidate + 8)
        length = words.word(candidate + 16)
        if names is not None and length and names > pcheader and words.word(candidate + 24) == length:
            return candidate
    return 0


def _gofunc(elf: ElfView, words: _Words, moduledata: int, table: Pclntab, data: mmap.mmap) -> int:
    """The go:func.* base that makes the inline trees of a few functions read sensibly; 0 if none does."""
    symbols = elf.symbols(["go:func.*", "go.func.*"])
    candidates = [s.value for s in symbols.values()]
    if moduledata:
        for index in _GOFUNC_WORDS:
            value = words.word(moduledata + 8 * index)
            if value and words.loaded(value) and value not in candidates:
                candidates.append(value)
    for base in candidates:
        if _trees_read_sensibly(table, words, base, data, elf):
            return base
    return 0


def _trees_read_sensibly(table: Pclntab, words: _Words, base: int, data: mmap.mmap, elf: ElfView) -> bool:
    """Whether reading inline trees at `base` gives valid name offsets for a few functions."""
    segments = [(s.vaddr, s.offset, s.filesz) for s in elf.loads()]

    def read(key: int, offset: int, size: int) -> bytes | None:
        return _read_vaddr(data, segments, base + key + offset, size)

    probe = Pclntab(data, table._base, table.size, table.text_start, read)
    checked = 0
    step = max(1, probe.nfunc // 512)
    for index in range(0, probe.nfunc, step):
        func = probe._func(index)
        tree = probe._inline_tree(func)
        if tree is None:
            continue
        try:
            name_off, parent_pc, _ = probe._inlined_call(tree[1], 0, tree[2])
        except PclntabError:
            return False
        if not probe.name_starts_at(name_off) or not 0 <= parent_pc < func.end - func.entry:
            return False
        checked += 1
        if checked >= _CHECKED_TREES:
            break
    return checked > 0
