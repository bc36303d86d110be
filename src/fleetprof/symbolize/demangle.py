"""Demangle C++ (Itanium), legacy Rust (`_ZN…17h<hash>E`) and Rust v0 (`_R…`) symbol names.

C++ goes through `cxxfilt` (libstdc++'s `__cxa_demangle`, the same output as `addr2line -C` and perf);
Rust v0 through `pycxxfilt` (LLVM's demangler); legacy Rust is decoded here, as rustc-demangle does,
because no C++ demangler undoes its `$LT$`/`..` escapes. Anything that fails to demangle stays as given.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import cxxfilt

try:
    import pycxxfilt
except ImportError:  # optional: without it v0 Rust names stay mangled
    pycxxfilt = None

_RUST_HASH = re.compile(r"h[0-9a-f]{16}")
_LLVM_SUFFIX = re.compile(r"\.llvm\.\d+$")
_LEGACY_ESCAPES = {
    "SP": "@",
    "BP": "*",
    "RF": "&",
    "LT": "<",
    "GT": ">",
    "LP": "(",
    "RP": ")",
    "C": ",",
}


@functools.lru_cache(maxsize=65536)
def demangle(name: str) -> str:
    """The human-readable form of a symbol name; `name` unchanged when it is not mangled or invalid."""
    if not name.startswith(("_Z", "_R", "__Z", "__R")):
        return name
    base, at, version = name.partition("@")
    base = _LLVM_SUFFIX.sub("", base)
    if base.startswith("__"):
        base = base[1:]
    if base.startswith("_R"):
        out = _demangle_rust_v0(base)
    else:
        out = _demangle_rust_legacy(base)
        if out is None:
            out = _demangle_cxx(base)
    if out is None:
        return name
    return f"{out}{at}{version}"


def _demangle_cxx(name: str) -> str | None:
    try:
        return cxxfilt.demangle(name)
    except cxxfilt.InvalidName:
        return None
    except cxxfilt.Error:  # no libstdc++ on this host: LLVM's Itanium demangler instead
        return _call_pycxxfilt(pycxxfilt.itanium_demangle if pycxxfilt else None, name)


def _demangle_rust_v0(name: str) -> str | None:
    base, dot, suffix = name.partition(".")
    out = _call_pycxxfilt(pycxxfilt.rust_demangle if pycxxfilt else None, base)
    if out is None:
        return None
    return f"{out}{dot}{suffix}"


def _call_pycxxfilt(func: Callable[[str], str | None] | None, name: str) -> str | None:
    if func is None:
        return None
    try:
        return func(name)
    except ValueError:
        return None


def _demangle_rust_legacy(name: str) -> str | None:
    """Decode `_ZN<len><ident>…17h<16 hex>E[.suffix]`; None when `name` is not a legacy Rust symbol."""
    if not name.startswith("_ZN") or "17h" not in name:  # the hash element is `17h<16 hex>`
        return None
    parts: list[str] = []
    pos = 3
    while pos < len(name) and name[pos] != "E":
        end = pos
        while end < len(name) and name[end].isdigit():
            end += 1
        if end == pos:
            return None
        length = int(name[pos:end])
        ident = name[end : end + length]
        if len(ident) != length or not ident:
            return None
        parts.append(ident)
        pos = end + length
    if pos >= len(name) or len(parts) < 2 or not _RUST_HASH.fullmatch(parts[-1]):
        return None
    suffix = name[pos + 1 :]
    if suffix and not suffix.startswith("."):
        return None
    decoded = "::".join(_unescape_rust_ident(p) for p in parts[:-1])
    return decoded + suffix


def _unescape_rust_ident(ident: str) -> str:
    if ident.startswith("_$"):
        ident = ident[1:]
    out: list[str] = []
    i = 0
    while i < len(ident):
        ch = ident[i]
        if ch == "." and ident.startswith("..", i):
            out.append("::")
            i += 2
        elif ch == "$":
            end = ident.find("$", i + 1)
            decoded = _decode_escape(ident[i + 1 : end]) if end > 0 else None
            if decoded is None:
                out.append(ident[i:])
                break
            out.append(decoded)
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _decode_escape(code: str) -> str | None:
    if code in _LEGACY_ESCAPES:
        return _LEGACY_ESCAPES[code]
    if code.startswith("u") and len(code) > 1:
        try:
            return chr(int(code[1:], 16))
        except ValueError:
            return None
    return None
