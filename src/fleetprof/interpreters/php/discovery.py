"""Recognise the Zend engine in an ELF file (`php`, `php-cgi`, `php-fpm`, `libphp*.so`) and describe it.

`inspect_php_binary` never raises: it returns None for a file that is not a Zend engine, a PhpUnsupported
with a one-line reason for an engine fleetprof cannot walk, and otherwise a PhpBinary (version,
`executor_globals`'s ELF address, the VM's native ranges, the struct layout). Results are cached per file
id for the life of the process.

Version: the SAPI layer compiles `"X-Powered-By: PHP/" PHP_VERSION` into every engine (CLI, FPM, CGI,
embed, Apache module), so `.rodata` names the exact release; when that string is missing, the
`"Zend Engine vX.Y"` banner gives the minor (Zend 3.Y is PHP 7.Y, Zend 4.Y is PHP 8.Y).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fleetprof.elf.view import ElfView, Symbol
from fleetprof.interpreters.engine import EngineFiles, EngineUnsupported
from fleetprof.interpreters.php.layouts import PhpLayout, layout_for, supported_text

EXECUTOR_GLOBALS = "executor_globals"
_ZTS_MARKERS = ("executor_globals_offset", "tsrm_get_ls_cache", "_tsrm_ls_cache")
_VM_SYMBOLS = ("execute_ex", "zend_execute", "zend_vm_kind")
_MARKERS = (EXECUTOR_GLOBALS, *_VM_SYMBOLS, *_ZTS_MARKERS)
_NAME = re.compile(r"^(php(-cgi|-fpm)?[0-9.]*|libphp.*\.so(\.[0-9.]+)?)$")
_POWERED_BY = re.compile(rb"X-Powered-By: PHP/(\d+)\.(\d+)\.(\d+)[^\x00]*\x00")
_ZEND_BANNER = re.compile(rb"Zend Engine v(\d+)\.(\d+)\.(\d+)")
_MOV_EAX_RET = re.compile(rb"\xb8(....)\xc3", re.DOTALL)  # zend_vm_kind: mov $imm32, %eax; ret
_JMP_R15 = b"\x41\xff\x27"  # jmp *(%r15): the HYBRID VM's dispatch to opline->handler (the JIT's entry)
ZEND_VM_KIND_HYBRID = 4


def is_php_name(path: str) -> bool:
    """Whether a file's name is one a Zend engine ships under (the OTel profiler's pattern)."""
    return _NAME.match(Path(path).name) is not None


@dataclass(frozen=True, slots=True)
class PhpUnsupported(EngineUnsupported):
    """Why fleetprof cannot walk PHP here (`[unwind: php: reason]`)."""

    RUNTIME: ClassVar[str] = "php"
    is_php: bool = True  # False: there is no Zend engine at all (no marker frame is due)


@dataclass(frozen=True, slots=True)
class PhpBinary:
    """One Zend engine as the profiler needs it. Addresses are ELF virtual addresses (add the bias)."""

    path: str
    file_id: str
    version: tuple[int, int, int]  # (major, minor, release); release is -1 when the file does not say
    version_source: str  # "X-Powered-By" or "Zend Engine banner"
    executor_globals: int  # &executor_globals (NTS builds)
    execute_ex: tuple[int, int]  # (address, size): the VM loop, the native frame PHP frames hang off
    zend_execute: tuple[int, int]  # (address, size): entry from C for a script (0, 0 when not found)
    vm_kind: int  # zend_vm_kind() (4 = HYBRID, the JIT's), -1 when it could not be decoded
    layout: PhpLayout
    jit_dispatch: int = 0  # execute_ex's first `jmp *(%r15)` + 1: JIT'd code is unwound as this pc; 0: none


_Result = PhpBinary | PhpUnsupported | None


def inspect_php_binary(path: str | Path, file_id: str | None = None) -> _Result:
    """Describe the Zend engine in `path`: PhpBinary, PhpUnsupported (why not), or None (not PHP)."""
    return _FILES.inspect(path, file_id)


def _describe(image: ElfView, path: str, file_id: str) -> _Result:
    symbols = image.symbols(_MARKERS)
    if not any(name in symbols for name in (EXECUTOR_GLOBALS, *_VM_SYMBOLS, _ZTS_MARKERS[0])):
        return None
    found = version_of(image.section_data(".rodata") or b"")
    if found is None:
        return PhpUnsupported(f"{Path(path).name}: no PHP version string (X-Powered-By, Zend Engine)")
    version, source = found
    name = f"PHP {version[0]}.{version[1]}"
    layout = layout_for(version[0], version[1])
    if layout is None:
        return PhpUnsupported(f"{name} has no struct layout (covered: {supported_text()})")
    engine = engine_globals(symbols)
    if isinstance(engine, str):
        return PhpUnsupported(f"{name}: {engine}")
    execute_ex = symbols.get("execute_ex")
    if execute_ex is None:
        return PhpUnsupported(f"{name}: no execute_ex symbol (the VM loop) to hang PHP frames off")
    zend_execute = symbols.get("zend_execute")
    vm_kind = _vm_kind(image, symbols.get("zend_vm_kind"))
    return PhpBinary(
        path=path,
        file_id=file_id,
        version=version,
        version_source=source,
        executor_globals=engine,
        execute_ex=(execute_ex.value, execute_ex.size),
        zend_execute=(zend_execute.value, zend_execute.size) if zend_execute else (0, 0),
        vm_kind=vm_kind,
        layout=layout,
        jit_dispatch=_jit_dispatch(image, execute_ex) if vm_kind == ZEND_VM_KIND_HYBRID else 0,
    )


def version_of(rodata: bytes) -> tuple[tuple[int, int, int], str] | None:
    """(major, minor, release) and where it came from, read from an engine's `.rodata`; None if absent."""
    found = _POWERED_BY.search(rodata)
    if found is not None:
        major, minor, release = (int(group) for group in found.groups())
        return (major, minor, release), "X-Powered-By"
    banner = _ZEND_BANNER.search(rodata)
    if banner is not None and int(banner.group(1)) in (3, 4):
        return (int(banner.group(1)) + 4, int(banner.group(2)), -1), "Zend Engine banner"
    return None


def engine_globals(symbols: dict[str, Symbol]) -> int | str:
    """ELF address of `executor_globals`, or why it cannot be had (ZTS build, stripped symbol)."""
    symbol = symbols.get(EXECUTOR_GLOBALS)
    if symbol is not None:
        return symbol.value
    if any(name in symbols for name in _ZTS_MARKERS):
        return "ZTS (thread-safe) build: executor_globals is per-thread TLS data, not supported yet"
    return "no executor_globals symbol (stripped .dynsym?)"


def _vm_kind(image: ElfView, symbol: Symbol | None) -> int:
    """What zend_vm_kind() returns, decoded from its `mov $kind, %eax; ret` body; -1 when it is not that."""
    code = image.read_vaddr(symbol.value, 6) if symbol is not None else None
    match = _MOV_EAX_RET.fullmatch(code or b"")
    return struct.unpack("<I", match.group(1))[0] if match else -1


def _jit_dispatch(image: ElfView, execute_ex: Symbol) -> int:
    """ELF pc the opcache JIT's code is unwound as: one byte into execute_ex's first dispatch jump, where the
    HYBRID VM enters JIT'd code on its own frame (past the prologue, so the body's CFA rule holds there and
    one byte before); 0 when execute_ex has no such jump (x86-64 only)."""
    code = image.read_vaddr(execute_ex.value, execute_ex.size) or b""
    at = code.find(_JMP_R15)
    return execute_ex.value + at + 1 if at > 0 else 0


_FILES: EngineFiles[PhpBinary | PhpUnsupported] = EngineFiles(_describe)
