"""Recognise V8 in an ELF file (`node`, `nodejs`, `libnode.so.*`) and describe it.

`inspect_v8_binary` never raises: None for a file without V8, a V8Unsupported with a one-line reason for one
fleetprof cannot walk, else a V8Binary: the version (`v8::internal::Version::{major_,minor_,build_}`), the
layout from the postmortem metadata (`v8dbg_*`) and the range of the embedded builtins (the interpreter's
entry trampoline, its bytecode handlers, builtins JavaScript calls through), where a native frame may stand
for a JavaScript one. Results are cached per file id.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fleetprof.elf.view import ElfView, SymbolEntry, SymbolTable
from fleetprof.interpreters.engine import EngineFiles, EngineUnsupported
from fleetprof.interpreters.v8.layouts import V8Layout, layout_from

_NAME = re.compile(r"^(node|nodejs|node[0-9]+|libnode\.so(\.[0-9.]+)?)$")
_VERSION = ("major_", "minor_", "build_")
_VERSION_SYMBOL = "_ZN2v88internal7Version{}E"
STT_FUNC = 2
_BYTECODE_SIZES = "_ZN2v88internal11interpreter9Bytecodes14kBytecodeSizesE"
_TRAMPOLINE = "Builtins_InterpreterEntryTrampoline"


def is_v8_name(path: str) -> bool:
    """Whether a file's name is one Node.js ships V8 under."""
    return _NAME.match(Path(path).name) is not None


@dataclass(frozen=True, slots=True)
class V8Unsupported(EngineUnsupported):
    """Why fleetprof cannot walk V8 here (`[unwind: v8: reason]`)."""

    RUNTIME: ClassVar[str] = "v8"


@dataclass(frozen=True, slots=True)
class V8Binary:
    """One V8 engine as the profiler needs it. Addresses are ELF virtual addresses (add the bias)."""

    path: str
    file_id: str
    version: tuple[int, int, int]
    layout: V8Layout
    builtins: tuple[int, int]  # [start, end) of the embedded builtins' code
    bytecode_sizes: bytes  # Bytecodes::kBytecodeSizes (3 operand scales x bytecodes), b"" when absent
    trampoline: int = 0  # Builtins_InterpreterEntryTrampoline, 0 when absent: finds a remapped builtins copy


_Result = V8Binary | V8Unsupported | None


def inspect_v8_binary(path: str | Path, file_id: str | None = None) -> _Result:
    """Describe the V8 in `path`: V8Binary, V8Unsupported (why not), or None."""
    return _FILES.inspect(path, file_id)


def _matching(table: SymbolTable, pattern: bytes) -> list[SymbolEntry]:
    """The defined entries of `table` whose names match `pattern` (a regex over the string table)."""
    offsets = {m.start() for m in re.finditer(pattern, table.strings)}
    return [entry for entry in table.entries() if entry[0] in offsets and entry[2] != 0]


def postmortem_constants(image: ElfView) -> dict[str, int]:
    """Every `v8dbg_*` integer constant in the file, keyed by its name without the prefix."""
    consts: dict[str, int] = {}
    for table_name in (".dynsym", ".symtab"):
        table = image.symbol_table(table_name)
        if table is None or consts:
            continue
        for st_name, _info, _shndx, value, size in _matching(table, rb"(?<=\0)v8dbg_[A-Za-z0-9_]+(?=\0)"):
            data = image.read_vaddr(value, size) if size in (4, 8) else None
            if data is not None:
                name = table.string(st_name)[len("v8dbg_") :]
                consts[name] = int.from_bytes(data, "little", signed=True)
    return consts


def builtins_range(image: ElfView) -> tuple[int, int] | None:
    """[start, end) of the `Builtins_*` code symbols (the embedded blob), None without a symbol table."""
    table = image.symbol_table(".symtab")
    if table is None:
        return None
    found = [e for e in _matching(table, rb"(?<=\0)Builtins_[A-Za-z0-9_]+(?=\0)") if e[1] & 0xF == STT_FUNC]
    if not found:
        return None
    return min(e[3] for e in found), max(e[3] + max(e[4], 1) for e in found)


def _describe(image: ElfView, path: str, file_id: str) -> _Result:
    symbols = image.symbols(_VERSION_SYMBOL.format(f"{len(part)}{part}") for part in _VERSION)
    parts = []
    for part in _VERSION:
        symbol = symbols.get(_VERSION_SYMBOL.format(f"{len(part)}{part}"))
        data = image.read_vaddr(symbol.value, 4) if symbol else None
        if data is None:
            return None
        parts.append(struct.unpack("<i", data)[0])
    version = (parts[0], parts[1], parts[2])
    consts = postmortem_constants(image)
    if not consts:
        return V8Unsupported(
            f"V8 {version[0]}.{version[1]}: no postmortem metadata (v8dbg_*) in {Path(path).name}"
        )
    layout = layout_from(consts, version)
    if isinstance(layout, str):
        return V8Unsupported(layout)
    builtins = builtins_range(image)
    if builtins is None:
        return V8Unsupported(f"V8 {version[0]}.{version[1]}: no Builtins_* symbols in {Path(path).name}")
    found = image.symbols([_BYTECODE_SIZES, _TRAMPOLINE])
    sizes, trampoline = found.get(_BYTECODE_SIZES), found.get(_TRAMPOLINE)
    table = image.read_vaddr(sizes.value, sizes.size) if sizes and sizes.size % 3 == 0 else None
    inside = trampoline is not None and builtins[0] <= trampoline.value < builtins[1]
    return V8Binary(
        path=path,
        file_id=file_id,
        version=version,
        layout=layout,
        builtins=builtins,
        bytecode_sizes=table or b"",
        trampoline=trampoline.value if trampoline is not None and inside else 0,
    )


_FILES: EngineFiles[V8Binary | V8Unsupported] = EngineFiles(_describe)
