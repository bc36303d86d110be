"""Kernel symbolization from /proc/kallsyms (loaded once, sorted, bisect lookups).

Only text symbols (t/T/w/W) are kept. kallsyms has no sizes, so a symbol is taken to run to the next
one, bounded by its region: core kernel text ends at `_etext`/`_einittext`, a module at the end of
its /proc/modules range, and anything else (BPF programs, ftrace trampolines, the last symbol) at
`MAX_SYMBOL_SPAN`. Addresses outside every region render as `[kernel]+0xADDR` or `[module]+0xOFF`.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

MAX_SYMBOL_SPAN = 1 << 20
_LINE = re.compile(r"^([0-9a-fA-F]+) [tTwW] (\S+)(?:\t\[(\S+)\])?$", re.M)
_MODULE_LINE = re.compile(r"^(\S+) (\d+) .* (0x[0-9a-fA-F]+)$", re.M)
_CORE_BOUNDS = (("_stext", "_etext"), ("_sinittext", "_einittext"))
_END_MARKERS = frozenset(
    {"_etext", "_einittext", "__init_end", "_end", "__entry_text_end", "__irqentry_text_end"}
)


@dataclass(frozen=True, slots=True)
class KernelSymbol:
    """A resolved kernel address: function name, module ("" for the core kernel) and offset."""

    name: str
    module: str
    offset: int

    @property
    def function(self) -> str:
        """The name used in frames (the folded `_[k]` suffix is added by the output layer)."""
        return self.name


class KernelSymbols:
    """Text symbols of the running kernel; `available` is False when addresses are hidden."""

    def __init__(self, kallsyms_text: str, modules_text: str = "") -> None:
        addrs: list[int] = []
        names: list[str] = []
        mods: list[str] = []
        for match in _LINE.finditer(kallsyms_text):
            addrs.append(int(match.group(1), 16))
            names.append(match.group(2))
            mods.append(match.group(3) or "")
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self._addrs = [addrs[i] for i in order]
        self._names = [names[i] for i in order]
        self._mods = [mods[i] for i in order]
        self.count = len(self._addrs)
        self.available = any(self._addrs)
        self.reason = "" if self.available else _hidden_reason(self.count)
        core = {n: a for a, n, m in zip(self._addrs, self._names, self._mods, strict=True) if not m}
        self._core = [(core[s], core[e]) for s, e in _CORE_BOUNDS if s in core and e in core]
        self._modules = _parse_modules(modules_text)

    @classmethod
    def load(cls, kallsyms: str = "/proc/kallsyms", modules: str = "/proc/modules") -> KernelSymbols:
        """Read the files once; unreadable files give an empty, unavailable table with a reason."""
        try:
            with open(kallsyms, encoding="utf-8", errors="replace") as stream:
                text = stream.read()
        except OSError as exc:
            table = cls("")
            table.reason = f"kernel symbols unavailable: {kallsyms}: {exc.strerror or exc}"
            return table
        try:
            with open(modules, encoding="utf-8", errors="replace") as stream:
                modules_text = stream.read()
        except OSError:
            modules_text = ""
        return cls(text, modules_text)

    def lookup(self, addr: int) -> KernelSymbol | None:
        """The symbol containing `addr`, or None when it lies outside every known region."""
        if not self.available:
            return None
        idx = bisect.bisect_right(self._addrs, addr) - 1
        if idx < 0:
            return None
        start, module = self._addrs[idx], self._mods[idx]
        if not module and self._names[idx] in _END_MARKERS:
            return None
        limit = self._region_end(start, module)
        if idx + 1 < len(self._addrs):
            limit = min(limit, self._addrs[idx + 1]) if self._mods[idx + 1] == module else limit
        if not start <= addr < limit:
            return None
        return KernelSymbol(self._names[idx], module, addr - start)

    def ranges(self, names: set[str]) -> list[tuple[int, int]]:
        """[start, end) of each core-kernel function among `names` (empty when addresses are hidden)."""
        if not self.available:
            return []
        out = []
        for idx, name in enumerate(self._names):
            if name in names and not self._mods[idx]:
                start = self._addrs[idx]
                end = self._addrs[idx + 1] if idx + 1 < len(self._addrs) else start + 1
                out.append((start, end))
        return out

    def name(self, addr: int) -> str:
        """Function name for `addr`; `[module]+0xOFF` or `[kernel]+0xADDR` when unknown."""
        sym = self.lookup(addr)
        if sym is not None:
            return sym.name
        for name, (base, size) in self._modules.items():
            if base <= addr < base + size:
                return f"[{name}]+0x{addr - base:x}"
        return f"[kernel]+0x{addr:x}"

    def _region_end(self, start: int, module: str) -> int:
        if module:
            bounds = self._modules.get(module)
            if bounds is not None:
                return bounds[0] + bounds[1]
            return start + MAX_SYMBOL_SPAN
        for low, high in self._core:
            if low <= start < high:
                return high
        return start + MAX_SYMBOL_SPAN


def _parse_modules(text: str) -> dict[str, tuple[int, int]]:
    """name -> (base address, size) from /proc/modules (zero addresses are dropped)."""
    out: dict[str, tuple[int, int]] = {}
    for match in _MODULE_LINE.finditer(text):
        base = int(match.group(3), 16)
        if base:
            out[match.group(1)] = (base, int(match.group(2)))
    return out


def _hidden_reason(count: int) -> str:
    if not count:
        return "kernel symbols unavailable: /proc/kallsyms has no text symbols"
    return "kernel symbols hidden: /proc/kallsyms shows zero addresses (need root, or kernel.kptr_restrict=0)"
