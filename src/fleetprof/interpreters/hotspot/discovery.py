"""Recognise HotSpot in an ELF file (`libjvm.so`) and read its VMStructs tables' names from the file.

HotSpot exports `gHotSpotVMStructs`, `gHotSpotVMTypes`, `gHotSpotVMIntConstants` and
`gHotSpotVMLongConstants` (the tables the Serviceability Agent reads): arrays of entries whose `char*` fields
are R_X86_64_RELATIVE relocations, so the names come from the file with its relocations applied. The
numbers in them (field offsets, strides) are computed by HotSpot's static initializers and are all 0 in the
file: `fleetprof.interpreters.hotspot.process.layout_from_process` reads those from a running JVM. Results
are cached per file id; nothing here raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fleetprof.elf.view import ElfView
from fleetprof.interpreters.engine import EngineFiles, EngineUnsupported

R_X86_64_RELATIVE = 8
MAX_ENTRIES = 1 << 14  # a table longer than this is not HotSpot's (JDK 17 has 788 structs, 768 types)
MAX_NAME = 512
# The entry structs (vmStructs.hpp), unchanged since JDK 6; layout_from_process checks them against the
# process's gHotSpotVM*Offset/Stride variables before trusting any number.
STRUCT_STRIDE = 48  # VMStructEntry {typeName, fieldName, typeString, int32 isStatic, uint64 offset, address}
STRUCT_IS_STATIC = 24
STRUCT_OFFSET = 32
STRUCT_ADDRESS = 40
TYPE_STRIDE = 40  # VMTypeEntry {typeName, superclassName, int32 isOop, isInteger, isUnsigned, uint64 size}
TYPE_SIZE = 32
CONSTANT_STRIDE = 16  # VMIntConstantEntry {name, int32 value} / VMLongConstantEntry {name, uint64 value}
CONSTANT_VALUE = 8
TABLES = ("gHotSpotVMStructs", "gHotSpotVMTypes", "gHotSpotVMIntConstants", "gHotSpotVMLongConstants")
META = {  # the process's own description of the entry structs: (symbol, the value assumed above)
    "gHotSpotVMStructEntryArrayStride": STRUCT_STRIDE,
    "gHotSpotVMStructEntryTypeNameOffset": 0,
    "gHotSpotVMStructEntryFieldNameOffset": 8,
    "gHotSpotVMStructEntryTypeStringOffset": 16,
    "gHotSpotVMStructEntryIsStaticOffset": STRUCT_IS_STATIC,
    "gHotSpotVMStructEntryOffsetOffset": STRUCT_OFFSET,
    "gHotSpotVMStructEntryAddressOffset": STRUCT_ADDRESS,
    "gHotSpotVMTypeEntryArrayStride": TYPE_STRIDE,
    "gHotSpotVMTypeEntryTypeNameOffset": 0,
    "gHotSpotVMTypeEntrySizeOffset": TYPE_SIZE,
    "gHotSpotVMIntConstantEntryArrayStride": CONSTANT_STRIDE,
    "gHotSpotVMIntConstantEntryNameOffset": 0,
    "gHotSpotVMIntConstantEntryValueOffset": CONSTANT_VALUE,
    "gHotSpotVMLongConstantEntryArrayStride": CONSTANT_STRIDE,
    "gHotSpotVMLongConstantEntryNameOffset": 0,
    "gHotSpotVMLongConstantEntryValueOffset": CONSTANT_VALUE,
}
_VERSION_PARTS = ("_vm_major_version", "_vm_minor_version", "_vm_security_version", "_vm_build_number")
MIN_MAJOR = 11  # below: JDK 8's interpreter frame (no mirror slot) and table names fleetprof does not read


def is_hotspot_name(path: str) -> bool:
    """Whether a file's name is the one HotSpot ships as (`lib/server/libjvm.so`, `lib/client/...`)."""
    return Path(path).name == "libjvm.so"


@dataclass(frozen=True, slots=True)
class HotSpotUnsupported(EngineUnsupported):
    """Why fleetprof cannot walk this JVM (`[unwind: jvm: reason]`)."""

    RUNTIME: ClassVar[str] = "jvm"


@dataclass(frozen=True, slots=True)
class StructEntry:
    """One VMStructs row as the file has it: `Type::_field`, its C type, and for statics the ELF address."""

    type_name: str
    field_name: str
    type_string: str
    address: int  # ELF virtual address of a static field (add the bias), 0 for instance fields


@dataclass(frozen=True, slots=True)
class VMTables:
    """The names in the four VM tables, index for index, and the ELF addresses of the arrays."""

    structs: tuple[StructEntry, ...]
    types: tuple[str, ...]
    int_constants: tuple[str, ...]
    long_constants: tuple[str, ...]
    arrays: dict[str, int]  # table symbol -> ELF address of its array (the symbol's relocated value)
    meta: dict[str, int]  # META symbol -> its ELF address (read from the process: the file holds 0)


@dataclass(frozen=True, slots=True)
class HotSpotBinary:
    """One libjvm.so as the profiler needs it. Addresses are ELF virtual addresses (add the bias)."""

    path: str
    file_id: str
    version: tuple[int, int, int, int]  # major, minor, security, build (Abstract_VM_Version::_vm_*)
    tables: VMTables

    @property
    def version_text(self) -> str:
        """`17.0.15+6` style."""
        major, minor, security, build = self.version
        return f"{major}.{minor}.{security}+{build}"


_Result = HotSpotBinary | HotSpotUnsupported | None


def inspect_hotspot_binary(path: str | Path, file_id: str | None = None) -> _Result:
    """Describe the HotSpot in `path`: HotSpotBinary, HotSpotUnsupported (why not), or None."""
    return _FILES.inspect(path, file_id)


class _Image:
    """An ElfView with its RELATIVE relocations applied to pointer reads, and C strings read once."""

    def __init__(self, image: ElfView) -> None:
        self.image = image
        self.relative: dict[int, int] = {}
        for table in image.relocation_tables():
            for offset, info, addend in table.entries():
                if info & 0xFFFFFFFF == R_X86_64_RELATIVE:
                    self.relative[offset] = addend
        self._strings: dict[int, str] = {}

    def pointer(self, vaddr: int) -> int | None:
        """The pointer stored at `vaddr` once relocated (relative to a zero load address)."""
        if vaddr in self.relative:
            return self.relative[vaddr]
        data = self.image.read_vaddr(vaddr, 8)
        return None if data is None else struct.unpack("<Q", data)[0]

    def string(self, vaddr: int) -> str:
        """The NUL-terminated string at `vaddr` ("" when unreadable or absent)."""
        if not vaddr:
            return ""
        found = self._strings.get(vaddr)
        if found is None:
            data = b""
            for size in (64, MAX_NAME):
                data = self.image.read_vaddr(vaddr, size) or b""
                if b"\0" in data:
                    break
            found = data.split(b"\0", 1)[0].decode("ascii", "replace")
            self._strings[vaddr] = found
        return found

    def names(self, array: int, stride: int) -> list[int]:
        """The first-field pointers of a NULL-terminated table of `stride`-byte entries."""
        out: list[int] = []
        while len(out) < MAX_ENTRIES:
            name = self.pointer(array + len(out) * stride)
            if not name:
                return out
            out.append(name)
        return []


def read_tables(image: ElfView) -> VMTables | None:
    """The VM tables' names from the file, None when a table or its meta symbols are missing."""
    symbols = image.symbols([*TABLES, *META])
    if any(name not in symbols for name in (*TABLES, *META)):
        return None
    rel = _Image(image)
    arrays = {name: rel.pointer(symbols[name].value) or 0 for name in TABLES}
    if not all(arrays.values()):
        return None
    structs = []
    for index, name in enumerate(rel.names(arrays["gHotSpotVMStructs"], STRUCT_STRIDE)):
        entry = arrays["gHotSpotVMStructs"] + index * STRUCT_STRIDE
        static = image.read_vaddr(entry + STRUCT_IS_STATIC, 4)
        is_static = static is not None and struct.unpack("<i", static)[0] != 0
        structs.append(
            StructEntry(
                type_name=rel.string(name),
                field_name=rel.string(rel.pointer(entry + 8) or 0),
                type_string=rel.string(rel.pointer(entry + 16) or 0),
                address=(rel.pointer(entry + STRUCT_ADDRESS) or 0) if is_static else 0,
            )
        )
    if not structs:
        return None
    lists = [
        tuple(rel.string(p) for p in rel.names(arrays[table], stride))
        for table, stride in (
            ("gHotSpotVMTypes", TYPE_STRIDE),
            ("gHotSpotVMIntConstants", CONSTANT_STRIDE),
            ("gHotSpotVMLongConstants", CONSTANT_STRIDE),
        )
    ]
    return VMTables(
        structs=tuple(structs),
        types=lists[0],
        int_constants=lists[1],
        long_constants=lists[2],
        arrays=arrays,
        meta={name: symbols[name].value for name in META},
    )


def read_version(image: ElfView, tables: VMTables) -> tuple[int, int, int, int] | None:
    """Abstract_VM_Version::_vm_{major,minor,security}_version and _vm_build_number, found through the
    VMStructs statics (so a stripped .symtab does not matter): initialized data, where a part left in
    .bss (JDK 17's minor version) reads as 0; None without a major version."""
    statics = {f"{e.type_name}::{e.field_name}": e.address for e in tables.structs if e.address}
    parts = []
    for part in _VERSION_PARTS:
        address = statics.get(f"Abstract_VM_Version::{part}")
        data = image.read_vaddr(address, 4) if address else None
        parts.append(struct.unpack("<i", data)[0] if data else 0)
    return (parts[0], parts[1], parts[2], parts[3]) if parts[0] > 0 else None


def _describe(image: ElfView, path: str, file_id: str) -> _Result:
    if image.symbols(["gHotSpotVMStructs"]).get("gHotSpotVMStructs") is None:
        return None
    tables = read_tables(image)
    if tables is None:
        return HotSpotUnsupported(f"VMStructs tables unreadable in {Path(path).name}")
    version = read_version(image, tables)
    if version is None:
        return HotSpotUnsupported(f"{Path(path).name}: no Abstract_VM_Version::_vm_major_version")
    if version[0] < MIN_MAJOR:
        return HotSpotUnsupported(f"JDK {version[0]} is older than JDK {MIN_MAJOR}")
    return HotSpotBinary(path=path, file_id=file_id, version=version, tables=tables)


_FILES: EngineFiles[HotSpotBinary | HotSpotUnsupported] = EngineFiles(_describe)
