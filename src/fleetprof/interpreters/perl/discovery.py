"""Recognise the Perl 5 interpreter in an ELF file (`perl`, `libperl.so.5.36`) and describe it.

`inspect_perl_binary` never raises: it returns None for a file that is not a Perl interpreter (an
executable that only NEEDs libperl holds none), a PerlUnsupported with a one-line reason for one fleetprof
cannot walk, and otherwise a PerlBinary: the version (the PL_revision/PL_version/PL_subversion bytes), the
ways to the running interpreter (`PL_curinterp`, the `PL_current_context` thread-local), the VM loop's
ranges (`Perl_runops_standard`, `Perl_runops_debug`) and the struct layout. Results are cached per file id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fleetprof.elf.view import ElfView, Symbol
from fleetprof.interpreters.engine import EngineFiles, EngineUnsupported, ThreadLocal
from fleetprof.interpreters.perl.layouts import PerlLayout, layout_for, supported_text

CURRENT_CONTEXT = "PL_current_context"
_NAMED = (
    "PL_revision",
    "PL_version",
    "PL_subversion",
    "PL_curinterp",
    "PL_thr_key",
    "Perl_runops_standard",
    "Perl_runops_debug",
)
_NAME = re.compile(r"^(perl[0-9.]*|libperl\.so(\.[0-9.]+)?)$")
STT_TLS = 6
R_X86_64_DTPMOD64 = 16
R_X86_64_TPOFF64 = 18


def is_perl_name(path: str) -> bool:
    """Whether a file's name is one Perl ships under (an executable `perl*` or `libperl.so*`)."""
    return _NAME.match(Path(path).name) is not None


@dataclass(frozen=True, slots=True)
class PerlUnsupported(EngineUnsupported):
    """Why fleetprof cannot walk Perl here (`[unwind: perl: reason]`)."""

    RUNTIME: ClassVar[str] = "perl"
    is_perl: bool = True  # False: there is no Perl interpreter at all (no marker frame is due)


PerlTls = ThreadLocal  # where the engine's thread-local lives (engine.ThreadLocal)


@dataclass(frozen=True, slots=True)
class PerlBinary:
    """One Perl interpreter as the profiler needs it. Addresses are ELF virtual addresses (add the bias)."""

    path: str
    file_id: str
    version: tuple[int, int, int]
    curinterp: int  # &PL_curinterp: the first interpreter (the running one in a single-threaded program)
    tls: PerlTls | None  # PL_current_context (5.36: a __thread variable), None when not exported
    thr_key: int  # &PL_thr_key (the pthread key older threaded builds keep the context under), 0 if absent
    runops: tuple[tuple[int, int], ...]  # (address, size) of Perl_runops_standard, then _debug if present
    layout: PerlLayout


_Result = PerlBinary | PerlUnsupported | None


def inspect_perl_binary(path: str | Path, file_id: str | None = None) -> _Result:
    """Describe the Perl interpreter in `path`: PerlBinary, PerlUnsupported (why not), or None."""
    return _FILES.inspect(path, file_id)


def _describe(image: ElfView, path: str, file_id: str) -> _Result:
    symbols = image.symbols(_NAMED)
    runops = symbols.get("Perl_runops_standard")
    if runops is None:
        return None  # not an interpreter (e.g. a perl executable that NEEDs libperl.so)
    version = _version(image, symbols)
    if version is None:
        return PerlUnsupported(f"{Path(path).name}: no version bytes (PL_revision, PL_version)")
    name = f"Perl {version[0]}.{version[1]}.{version[2]}"
    layout = layout_for(version[0], version[1])
    if layout is None:
        return PerlUnsupported(f"{name} has no struct layout (covered: {supported_text()})")
    curinterp = symbols.get("PL_curinterp")
    tls = thread_local(image, CURRENT_CONTEXT)
    if curinterp is None:
        return PerlUnsupported(f"{name}: no PL_curinterp (an unthreaded build: not covered)")
    ranges = [(runops.value, runops.size)]
    debug = symbols.get("Perl_runops_debug")
    if debug is not None:
        ranges.append((debug.value, debug.size))
    thr_key = symbols.get("PL_thr_key")
    return PerlBinary(
        path=path,
        file_id=file_id,
        version=version,
        curinterp=curinterp.value,
        tls=tls,
        thr_key=thr_key.value if thr_key else 0,
        runops=tuple(ranges),
        layout=layout,
    )


def _version(image: ElfView, symbols: dict[str, Symbol]) -> tuple[int, int, int] | None:
    """(revision, version, subversion) from the three `const U8` globals perl.h defines."""
    values = []
    for name in ("PL_revision", "PL_version", "PL_subversion"):
        symbol = symbols.get(name)
        data = image.read_vaddr(symbol.value, 1) if symbol else None
        if not data:
            return None
        values.append(data[0])
    return values[0], values[1], values[2]


def thread_local(image: ElfView, name: str) -> PerlTls | None:
    """The TLS symbol `name`'s block offset and the GOT slots the loader fills for it."""
    offset = index = -1
    for table_name in (".dynsym", ".symtab"):
        table = image.symbol_table(table_name)
        if table is None or offset >= 0:
            continue
        for number, (st_name, info, shndx, value, _size) in enumerate(table.entries()):
            if info & 0xF == STT_TLS and shndx and table.string(st_name) == name:
                offset, index = value, number if table_name == ".dynsym" else -1
                break
    if offset < 0:
        return None
    module_got = tpoff_got = 0
    for relocations in image.relocation_tables():
        if relocations.symbols.name != ".dynsym":
            continue
        for r_offset, r_info, _addend in relocations.entries():
            if relocations.symbol_index(r_info) != index:
                continue
            kind = r_info & 0xFFFFFFFF
            if kind == R_X86_64_DTPMOD64:
                module_got = r_offset
            elif kind == R_X86_64_TPOFF64:
                tpoff_got = r_offset
    return PerlTls(offset, module_got, tpoff_got)


_FILES: EngineFiles[PerlBinary | PerlUnsupported] = EngineFiles(_describe)
