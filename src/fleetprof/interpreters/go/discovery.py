"""Find what the label reader needs in a Go binary: its release (from the build info the linker writes),
where g sits relative to the thread pointer, and runtime.g / runtime.m offsets (its DWARF when present,
else interpreters/go/layouts.py). Results are cached per file id."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from fleetprof.elf.view import ElfError, ElfView
from fleetprof.interpreters.go import layouts
from fleetprof.symbolize.golang.elffile import is_go_file
from fleetprof.symbolize.golang.pclntab import PclntabError, uvarint

BUILDINFO_MAGIC = b"\xff Go buildinf:"
_PT_TLS = 7
_PF_W = 2
_EM_X86_64 = 62
_STT_TLS = 6
_FLAG_INLINE_STRINGS = 2  # buildinfo flags: 1.18+ writes the version inline, not through pointers
_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class GoBinary:
    """A Go binary the label reader can serve."""

    path: str
    version: tuple[int, int]
    version_text: str  # "go1.19.8"
    tls_g: int  # g's address minus the thread pointer
    offsets: layouts.GoOffsets
    how: str  # "dwarf" or "table"
    read_only: tuple[tuple[int, int], ...] = ()  # ELF [start, end) of the non-writable segments (literals)


@dataclass(frozen=True, slots=True)
class GoUnsupported:
    """A Go binary whose labels can't be read; `reason` is one line."""

    reason: str


_cache: dict[str, GoBinary | GoUnsupported | None] = {}
_lock = threading.Lock()


def inspect_go_binary(path: str, file_id: str) -> GoBinary | GoUnsupported | None:
    """The Go runtime in an ELF file, None when it is not a Go binary (cached per file id)."""
    with _lock:
        if file_id in _cache:
            return _cache[file_id]
    try:
        found = _inspect(path)
    except ElfError as exc:
        found = GoUnsupported(str(exc))
    with _lock:
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[file_id] = found
    return found


def _inspect(path: str) -> GoBinary | GoUnsupported | None:
    with ElfView(path) as elf:
        if not is_go_file(elf):
            return None
        text = build_version(elf)
        if text is None:
            return GoUnsupported("no Go build info (version unknown)")
        version = parse_version(text)
        if version is None:
            return GoUnsupported(f"unrecognised Go version {text!r}")
        if elf.machine != _EM_X86_64:
            return GoUnsupported(f"{text}: labels are read on x86-64 only")
        how = "dwarf"
        offsets = dwarf_offsets(path, version) if _has_dwarf(elf) else None
        if offsets is None:
            how = "table"
            offsets = layouts.offsets_for(version)
        if offsets is None:
            return GoUnsupported(f"{text}: no runtime.g offsets for this release and no DWARF in the binary")
        read_only = tuple((s.vaddr, s.vaddr + s.filesz) for s in elf.loads() if not s.flags & _PF_W)
        return GoBinary(path, version, text, tls_g_offset(elf), offsets, how, read_only)


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of "go1.19.8", "go1.21rc2", "devel go1.22-abc"; None when unreadable."""
    at = text.find("go1.")
    if at < 0:
        return None
    digits = ""
    for ch in text[at + 4 :]:
        if not ch.isdigit():
            break
        digits += ch
    return (1, int(digits)) if digits else None


def build_version(elf: ElfView) -> str | None:
    """The Go version string from `.go.buildinfo` (or its magic in the data, for section-less files)."""
    data = _buildinfo_bytes(elf)
    if data is None or len(data) < 32 or not data.startswith(BUILDINFO_MAGIC):
        return None
    ptr_size, flags = data[14], data[15]
    if flags & _FLAG_INLINE_STRINGS:
        try:
            length, at = uvarint(data, 32, len(data))
        except PclntabError:
            return None
        text = data[at : at + length]
        return text.decode("utf-8", "replace") if length and len(text) == length else None
    if ptr_size != 8:
        return None
    header = elf.read_vaddr(int.from_bytes(data[16:24], "little"), 16)
    if header is None:
        return None
    addr, length = int.from_bytes(header[:8], "little"), int.from_bytes(header[8:], "little")
    raw = elf.read_vaddr(addr, length) if 0 < length < 256 else None
    return raw.decode("utf-8", "replace") if raw else None


def _buildinfo_bytes(elf: ElfView) -> bytes | None:
    section = elf.sections.get(".go.buildinfo")
    if section is not None:
        return elf.read(section.offset, min(section.size, 4096))
    for seg in elf.loads():
        if seg.flags & 1 or seg.filesz > 1 << 28:  # executable segments do not hold it
            continue
        data = elf.read(seg.offset, seg.filesz)
        at = data.find(BUILDINFO_MAGIC)
        while at >= 0 and at % 16:  # the linker aligns it
            at = data.find(BUILDINFO_MAGIC, at + 1)
        if at >= 0:
            return data[at : at + 4096]
    return None


def tls_g_offset(elf: ElfView) -> int:
    """Where g lives from the thread pointer: -8 in Go's own TLS slot (no PT_TLS: internal linking);
    runtime.tlsg's place in the executable's TLS block (x86-64 variant II: below the pointer) otherwise."""
    tls = elf.segment(_PT_TLS)
    if tls is None:
        return -8
    align = max(tls.align, 1)
    block = (tls.memsz + align - 1) // align * align
    return -block + _tlsg_value(elf)


def _tlsg_value(elf: ElfView) -> int:
    table = elf.symbol_table(".symtab")
    if table is None:
        return 0
    at = table.strings.find(b"\0runtime.tlsg\0")
    if at < 0:
        return 0
    for name, info, _, value, _ in table.entries():
        if name == at + 1 and info & 0xF == _STT_TLS:
            return value
    return 0


def _has_dwarf(elf: ElfView) -> bool:
    return ".debug_info" in elf.sections or ".zdebug_info" in elf.sections


def dwarf_offsets(path: str, version: tuple[int, int]) -> layouts.GoOffsets | None:
    """runtime.g's m and labels and runtime.m's curg from the binary's DWARF (its runtime units only)."""
    from elftools.common.exceptions import ELFError as PyElfError
    from elftools.elf.elffile import ELFFile

    wanted = {"runtime.g": {"m", "labels"}, "runtime.m": {"curg"}}
    found: dict[str, dict[str, int]] = {}
    try:
        with open(path, "rb") as stream:
            for unit in ELFFile(stream).get_dwarf_info().iter_CUs():
                top = unit.get_top_DIE()
                name = top.attributes.get("DW_AT_name")
                if name is not None and name.value == b"runtime":
                    _struct_members(top, wanted, found)
                    if all(wanted[t] <= found.get(t, {}).keys() for t in wanted):
                        break
    except (OSError, PyElfError, ValueError, KeyError, AttributeError):
        return None
    g, m = found.get("runtime.g", {}), found.get("runtime.m", {})
    if {"m", "labels"} - g.keys() or "curg" not in m:
        return None
    return layouts.GoOffsets(g["m"], m["curg"], g["labels"], layouts.form_for(version))


def _struct_members(top: Any, wanted: dict[str, set[str]], found: dict[str, dict[str, int]]) -> None:
    """Offsets of the `wanted` members of the wanted structs among a unit's types, into `found`."""
    for die in top.iter_children():
        if die.tag != "DW_TAG_structure_type" or "DW_AT_name" not in die.attributes:
            continue
        type_name = die.attributes["DW_AT_name"].value.decode()
        members = wanted.get(type_name)
        if members is None:
            continue
        fields = found.setdefault(type_name, {})
        for member in die.iter_children():
            member_name = member.attributes.get("DW_AT_name")
            where = member.attributes.get("DW_AT_data_member_location")
            if member_name is not None and where is not None and member_name.value.decode() in members:
                fields[member_name.value.decode()] = int(where.value)
