"""Recognise CRuby in an ELF file (`ruby`, `libruby-3.1.so.3.1`, `libruby.so.3.3`) and describe it.

`inspect_ruby_binary` never raises: it returns None for a file that is not a Ruby interpreter, a
RubyUnsupported with a one-line reason for one fleetprof cannot walk, and otherwise a RubyBinary: the
version (`ruby_version`, else the `ruby_description` banner), the ways to the running execution context
(the `ruby_current_ec` thread-local, `ruby_single_main_ractor`, `ruby_current_vm_ptr`), the global symbol
table (method names of C functions, class paths) and the struct layout. Results are cached per file id.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fleetprof.elf.view import ElfView, Symbol
from fleetprof.interpreters.engine import EngineFiles, EngineUnsupported, ThreadLocal
from fleetprof.interpreters.ruby.layouts import RubyLayout, layout_for, supported_text

CURRENT_EC = "ruby_current_ec"
_NAMED = (
    "ruby_version",
    "ruby_description",
    "ruby_single_main_ractor",
    "ruby_current_vm_ptr",
    "ruby_global_symbols",
    "rb_sym_all_symbols",
    "rb_vm_exec",
)
_NAME = re.compile(r"^(ruby[0-9.]*|libruby(-[0-9.]+)?\.so(\.[0-9.]+)?)$")
_VERSION = re.compile(rb"^(\d+)\.(\d+)\.(\d+)\x00")
_DESCRIPTION = re.compile(rb"ruby (\d+)\.(\d+)\.(\d+)(?:p\d+)? \(\d{4}-\d\d-\d\d")
STT_TLS = 6
R_X86_64_DTPMOD64 = 16
R_X86_64_TPOFF64 = 18
# rb_sym_all_symbols starts `rb_ary_new2(ruby_global_symbols.str_sym->num_entries)`: a RIP-relative
# load of str_sym (offset 8 of rb_symbols_t) into rax, then `mov 0x10(%rax),%rdi`.
_LOAD_STR_SYM = re.compile(rb"\x48\x8b\x05(....)\x48\x8b\x78\x10", re.DOTALL)


def is_ruby_name(path: str) -> bool:
    """Whether a file's name is one CRuby ships under (an executable `ruby*` or `libruby*.so*`)."""
    return _NAME.match(Path(path).name) is not None


@dataclass(frozen=True, slots=True)
class RubyUnsupported(EngineUnsupported):
    """Why fleetprof cannot walk Ruby here (`[unwind: ruby: reason]`)."""

    RUNTIME: ClassVar[str] = "ruby"
    is_ruby: bool = True  # False: there is no Ruby interpreter at all (no marker frame is due)


RubyTls = ThreadLocal  # where the engine's thread-local lives (engine.ThreadLocal)


@dataclass(frozen=True, slots=True)
class RubyBinary:
    """One CRuby interpreter as the profiler needs it. Addresses are ELF virtual addresses (add the bias)."""

    path: str
    file_id: str
    version: tuple[int, int, int]
    version_source: str  # "ruby_version" or "ruby_description"
    tls: RubyTls | None  # the thread-local execution context (3.0+), None when not exported
    single_main_ractor: int  # &ruby_single_main_ractor (NULL once a second ractor starts), 0 if absent
    current_vm_ptr: int  # &ruby_current_vm_ptr, 0 if absent
    global_symbols: int  # &ruby_global_symbols, 0 when it could not be found
    global_symbols_source: str  # "symbol", "rb_sym_all_symbols" (decoded) or ""
    vm_exec: tuple[int, int]  # (address, size) of rb_vm_exec: the native frame Ruby frames hang off
    layout: RubyLayout


_Result = RubyBinary | RubyUnsupported | None


def inspect_ruby_binary(path: str | Path, file_id: str | None = None) -> _Result:
    """Describe the CRuby interpreter in `path`: RubyBinary, RubyUnsupported (why not), or None."""
    return _FILES.inspect(path, file_id)


def _describe(image: ElfView, path: str, file_id: str) -> _Result:
    symbols = image.symbols(_NAMED)
    if "ruby_version" not in symbols and "rb_vm_exec" not in symbols:
        return None
    found = _version(image, symbols)
    if found is None:
        return RubyUnsupported(f"{Path(path).name}: no Ruby version string (ruby_version, ruby_description)")
    version, source = found
    name = f"Ruby {version[0]}.{version[1]}"
    layout = layout_for(version[0], version[1])
    if layout is None:
        return RubyUnsupported(f"{name} has no struct layout (covered: {supported_text()})")
    tls = thread_local_ec(image)
    ractor, vm_ptr = symbols.get("ruby_single_main_ractor"), symbols.get("ruby_current_vm_ptr")
    if tls is None and ractor is None and vm_ptr is None:
        return RubyUnsupported(f"{name}: no way to the execution context (ruby_current_ec, ractor, vm)")
    vm_exec = symbols.get("rb_vm_exec")
    if vm_exec is None:
        return RubyUnsupported(f"{name}: no rb_vm_exec symbol (the VM loop) to hang Ruby frames off")
    table, table_source = global_symbols(image, symbols)
    return RubyBinary(
        path=path,
        file_id=file_id,
        version=version,
        version_source=source,
        tls=tls,
        single_main_ractor=ractor.value if ractor else 0,
        current_vm_ptr=vm_ptr.value if vm_ptr else 0,
        global_symbols=table,
        global_symbols_source=table_source,
        vm_exec=(vm_exec.value, vm_exec.size),
        layout=layout,
    )


def _version(image: ElfView, symbols: dict[str, Symbol]) -> tuple[tuple[int, int, int], str] | None:
    """(major, minor, teeny) from the `ruby_version` string, else from the description banner."""
    symbol = symbols.get("ruby_version")
    found = _VERSION.match(image.read_vaddr(symbol.value, 16) or b"") if symbol else None
    if found is not None:
        major, minor, teeny = (int(group) for group in found.groups())
        return (major, minor, teeny), "ruby_version"
    banner = _DESCRIPTION.search(image.section_data(".rodata") or b"")
    if banner is not None:
        major, minor, teeny = (int(group) for group in banner.groups())
        return (major, minor, teeny), "ruby_description"
    return None


def thread_local_ec(image: ElfView) -> RubyTls | None:
    """The `ruby_current_ec` TLS symbol's block offset and the GOT slots the loader fills for it."""
    offset = index = -1
    for table_name in (".dynsym", ".symtab"):
        table = image.symbol_table(table_name)
        if table is None or offset >= 0:
            continue
        for number, (st_name, info, shndx, value, _size) in enumerate(table.entries()):
            if info & 0xF == STT_TLS and shndx and table.string(st_name) == CURRENT_EC:
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
    return RubyTls(offset, module_got, tpoff_got)


def global_symbols(image: ElfView, symbols: dict[str, Symbol]) -> tuple[int, str]:
    """&ruby_global_symbols: the symbol when exported, else decoded from rb_sym_all_symbols's first load
    of `ruby_global_symbols.str_sym` (Debian's libruby hides the table); (0, "") when neither works."""
    table = symbols.get("ruby_global_symbols")
    if table is not None:
        return table.value, "symbol"
    function = symbols.get("rb_sym_all_symbols")
    code = image.read_vaddr(function.value, min(function.size or 64, 128)) if function else None
    found = _LOAD_STR_SYM.search(code or b"")
    if function is None or found is None:
        return 0, ""
    end_of_insn = function.value + found.start() + 7
    str_sym = end_of_insn + struct.unpack("<i", found.group(1))[0]
    return str_sym - 8, "rb_sym_all_symbols"


_FILES: EngineFiles[RubyBinary | RubyUnsupported] = EngineFiles(_describe)
