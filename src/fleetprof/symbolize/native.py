"""Native symbolization: (file, ELF virtual addresses) -> frames, outermost function first.

Sources, merged: the binary's .symtab/.dynsym and DWARF, and a separate debug file found by build id or
`.gnu_debuglink` (CRC-checked). Each is turned into a `symbolic` SymCache once per file id (on disk
and in a bounded in-memory LRU). A file that can't be read or parsed degrades its addresses to
`module+0xADDR` and leaves a one-line reason in `problems`; nothing raises to the caller.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from symbolic import Archive, SymCache
from symbolic.exceptions import SymbolicError

from fleetprof.cachedir import default_cache_dir
from fleetprof.elf.debugfile import DEFAULT_DEBUG_DIRS, find_debug_file
from fleetprof.elf.reader import ElfError, ElfInfo, read_elf_info
from fleetprof.symbolize.debuginfod import DebuginfodClient
from fleetprof.symbolize.demangle import demangle
from fleetprof.symbolize.extents import CodeExtents, read_code_extents
from fleetprof.symbolize.lru import BoundedLru
from fleetprof.symbolize.minidebuginfo import SECTION, minidebuginfo_file
from fleetprof.symbolize.plt import PltNames, read_plt_names
from fleetprof.symbolize.startline import StartLines
from fleetprof.symbolize.symcache_store import PartInfo, StoredSymbols, SymcacheStore

_COLD_SUFFIX = re.compile(r"\.cold(\.\d+)?$")
# GCC clone suffixes (foo.constprop.0, foo.isra.0, foo.part.1, foo.cold): DWARF and addr2line call it foo.
_CLONE_SUFFIX = re.compile(r"(\.(cold|constprop|isra|part|lto_priv|localalias)(\.\d+)?)+$")
# A bare DW_AT_name (no scope, no parameters, not mangled): SymCache's name for a C++ function without
# DW_AT_linkage_name (GCC omits it for internal linkage: statics, anonymous namespaces).
_BARE_NAME = re.compile(r"^(?!_Z)[^:(]+$|^operator\(\)$")
_MEMO_LIMIT = 1 << 16
_INLINE_ENTRY = 0xFFFFFFFF  # SymCache's entry address for inlined frames


@dataclass(frozen=True, slots=True)
class NativeFile:
    """A file to symbolize: where to read it, how the process names it, and its identity."""

    file_id: str  # 32 hex digits, see fleetprof.process.fileid
    path: str  # path as the process sees it: module name, and where `.gnu_debuglink` files live
    open_path: str = ""  # path to read (e.g. /proc/PID/map_files/…); `path` when empty
    build_id: str = ""  # GNU build id (hex), when the caller already knows it
    root: str = ""  # e.g. /proc/PID/root: debug files are searched there first (containers)

    @property
    def module(self) -> str:
        """Basename used in `module+0xADDR` fallbacks."""
        return self.path.rstrip("/").rsplit("/", 1)[-1] or self.path


@dataclass(frozen=True, slots=True)
class NativeFrame:
    """One symbolized native frame (an inlined function is its own frame)."""

    function: str  # demangled name, or `module+0xADDR` when unknown
    system_name: str = ""  # mangled name when it differs from `function`
    file: str = ""  # source file from DWARF, "" when unknown
    line: int = 0  # source line, 0 when unknown
    inlined: bool = False  # True for every frame but the outermost (the real call frame)
    start_line: int = 0  # DW_AT_decl_line of the function, 0 when unknown


def fallback_frame(module: str, addr: int) -> NativeFrame:
    """The frame for an address that can't be symbolized: `libfoo.so+0x1a2b`."""
    return NativeFrame(function=f"{module}+0x{addr:x}")


@dataclass(slots=True)
class _Loaded:
    """A file's symbols as kept in memory."""

    module: str
    stored: StoredSymbols | None
    failure: str = ""
    dwarf_path: str = ""
    start_lines: StartLines | None = None
    memo: dict[int, tuple[NativeFrame, ...]] = field(default_factory=dict)
    read_path: str = ""  # where the file itself can be read (for PLT stub names), "" when it can't
    plt: PltNames | None = None

    def plt_name(self, addr: int) -> str | None:
        """`name@plt` (demangled) when `addr` is in a PLT stub of the file."""
        if self.plt is None:
            self.plt = read_plt_names(self.read_path) if self.read_path else PltNames()
        name = self.plt.lookup(addr)
        if name is None:
            return None
        return demangle(name.removesuffix("@plt")) + "@plt"

    def close(self) -> None:
        """Release the DWARF mapping used for start lines."""
        if self.start_lines is not None:
            self.start_lines.close()
            self.start_lines = None


class NativeSymbolizer:
    """Symbolizes ELF virtual addresses of native files; one instance per agent or server."""

    def __init__(
        self,
        cache_dir: str | Path | None = None,
        persist: bool = True,
        debug_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS,
        max_files: int = 32,
        start_lines: bool = True,
        debuginfod: DebuginfodClient | Literal["environment"] | None = "environment",
    ) -> None:
        """`cache_dir` defaults to symbols/ under the cache directory (`fleetprof.cachedir`);
        `persist=False` keeps SymCaches in memory only. `debuginfod` defaults to the servers in
        `DEBUGINFOD_URLS` (none when unset), asked when no local debug file is found."""
        directory = (cache_dir or default_cache_dir() / "symbols") if persist else None
        self._store = SymcacheStore(directory)
        self._debug_dirs = debug_dirs
        self._debuginfod = DebuginfodClient.from_environment() if debuginfod == "environment" else debuginfod
        self._want_start_lines = start_lines
        self._files: BoundedLru[str, _Loaded] = BoundedLru(max_files, on_evict=_Loaded.close)
        self.problems: dict[str, str] = {}  # module path -> why its addresses are degraded
        self.notes: dict[str, str] = {}  # module path -> why its symbols are limited
        self.stats: Counter[str] = Counter()

    def symbolize(self, file: NativeFile, addresses: Iterable[int]) -> dict[int, tuple[NativeFrame, ...]]:
        """Frames for each ELF address of `file`, outermost first; never raises for a bad file."""
        loaded = self._loaded(file)
        out: dict[int, tuple[NativeFrame, ...]] = {}
        for addr in addresses:
            self.stats["native.addresses"] += 1
            frames = loaded.memo.get(addr)
            if frames is None:
                try:
                    frames = self._lookup(loaded, addr)
                except Exception as exc:  # a library bug on one address must not lose the profile
                    self.problems.setdefault(file.path, f"unexpected {type(exc).__name__}: {_one_line(exc)}")
                    frames = (fallback_frame(loaded.module, addr),)
                if len(loaded.memo) >= _MEMO_LIMIT:
                    loaded.memo.clear()
                loaded.memo[addr] = frames
            if not frames[0].file and frames[0].function == f"{loaded.module}+0x{addr:x}":
                self.stats["native.unsymbolized"] += 1
            out[addr] = frames
        return out

    def summary(self) -> list[str]:
        """One line per degraded or limited file, for printing once at the end of a run."""
        lines = [f"{path}: {reason}" for path, reason in sorted(self.problems.items())]
        lines += [f"{path}: {note}" for path, note in sorted(self.notes.items())]
        if self._store.disabled_reason:
            lines.append(self._store.disabled_reason)
        return lines

    def close(self) -> None:
        """Drop every loaded file (mmaps, open DWARF files)."""
        self._files.clear()

    def _loaded(self, file: NativeFile) -> _Loaded:
        loaded = self._files.get(file.file_id)
        if loaded is None:
            try:
                loaded = self._load(file)
            except Exception as exc:  # last line of defense: one bad file must never stop a profile
                loaded = _Loaded(file.module, None, failure=f"unexpected {type(exc).__name__}: {exc}")
            if loaded.failure:
                self.problems.setdefault(file.path, loaded.failure.splitlines()[0][:300])
                self.stats["native.files_failed"] += 1
            elif loaded.stored is not None and loaded.stored.note:
                self.notes.setdefault(file.path, loaded.stored.note)
            self._files.put(file.file_id, loaded)
        return loaded

    def _load(self, file: NativeFile) -> _Loaded:
        self.stats["native.files"] += 1
        stored = self._store.load(file.file_id)
        if stored is not None and self._debug_file_appeared(file, stored):
            stored = None
        if stored is None:
            built = self._build(file)
            if isinstance(built, str):
                return _Loaded(file.module, None, failure=built)
            stored = self._store.save(built)
            self.stats["native.cache_builds"] += 1
        else:
            self.stats["native.cache_loads"] += 1
        dwarf_path = stored.dwarf_path
        if dwarf_path == "self":
            dwarf_path = file.open_path or file.path
        return _Loaded(file.module, stored, dwarf_path=dwarf_path, read_path=file.open_path or file.path)

    def _debug_file_appeared(self, file: NativeFile, stored: StoredSymbols) -> bool:
        """True when a cached entry built without a debug file now has one under a build-id path,
        or (for a file without DWARF) from debuginfod, whose negative cache keeps this cheap."""
        build_id = stored.build_id or file.build_id
        if stored.debug_path or len(build_id) <= 2:
            return False
        name = f".build-id/{build_id[:2]}/{build_id[2:]}.debug"
        if any(os.path.isfile(f"{root}{d}/{name}") for d in self._debug_dirs for root in {file.root, ""}):
            return True
        return (
            not stored.dwarf_path
            and self._debuginfod is not None
            and bool(self._debuginfod.debuginfo(build_id).path)
        )

    def _build(self, file: NativeFile) -> StoredSymbols | str:
        """Build SymCaches and extents from the file and its debug file; a reason string on failure."""
        open_path = file.open_path or file.path
        try:
            info = read_elf_info(open_path)
        except ElfError as exc:
            return str(exc)
        build_id = info.build_id or file.build_id
        notes: list[str] = []
        debug = "" if info.has_debug_info else self._find_debug(file, info, build_id, notes)
        parts: list[PartInfo] = []
        caches: list[SymCache] = []
        extents = CodeExtents()
        dwarf_path = "self" if info.has_debug_info else ""
        mini_used = False
        with ExitStack() as stack:
            mini = ""
            if not debug and not info.has_symtab:
                try:
                    mini = stack.enter_context(minidebuginfo_file(open_path)) or ""
                except (ElfError, OSError) as exc:
                    notes.append(f"MiniDebugInfo unusable ({_one_line(exc)})")
            sources = (("debug", debug, None), ("mini", mini, None), ("self", open_path, info))
            for role, path, elf in sources:
                if not path:
                    continue
                try:
                    elf = elf or read_elf_info(path)
                    cache = _make_symcache(path)
                    ext = read_code_extents(path)
                except (ElfError, SymbolicError, OSError) as exc:
                    if role == "self":
                        return f"{_one_line(exc)}"
                    what = f"debug file {path}" if role == "debug" else "MiniDebugInfo"
                    notes.append(f"{what} unusable ({_one_line(exc)})")
                    debug = "" if role == "debug" else debug
                    continue
                source = f"{open_path}[{SECTION}]" if role == "mini" else path
                parts.append(PartInfo(role, elf.loads[0].vaddr if elf.loads else 0, source))
                caches.append(cache)
                extents = extents.merged(ext) if extents.starts or extents.sections else ext
                mini_used = mini_used or role == "mini"
                if role == "debug" and elf.has_debug_info:
                    dwarf_path = path
        if not debug and not info.has_debug_info:
            notes.append(
                "no DWARF and no debug file: no file:line"
                if info.has_symtab
                else "stripped, no debug file: names from MiniDebugInfo (.gnu_debugdata), no file:line"
                if mini_used
                else "stripped (.dynsym only) and no debug file: exported functions only"
            )
        return StoredSymbols(
            file_id=file.file_id,
            parts=parts,
            symcaches=caches,
            extents=extents,
            dwarf_path=dwarf_path,
            debug_path=debug,
            build_id=build_id,
            note="; ".join(n for n in notes if n),
        )

    def _find_debug(self, file: NativeFile, info: ElfInfo, build_id: str, notes: list[str]) -> str:
        roots = [file.root, ""] if file.root else [""]
        for root in roots:
            found = find_debug_file(
                file.path, build_id, info.debuglink, info.debuglink_crc, self._debug_dirs, root=root
            )
            if found:
                return found
        if self._debuginfod is not None and build_id:
            fetched = self._debuginfod.debuginfo(build_id)
            if fetched.downloaded:
                self.stats["native.debuginfod_downloads"] += 1
            if fetched.path:
                return fetched.path
            notes.append(fetched.reason)
        if info.debuglink:
            notes.append(f"debug file {info.debuglink} not found")
        return ""

    def _lookup(self, loaded: _Loaded, addr: int) -> tuple[NativeFrame, ...]:
        stored = loaded.stored
        if stored is None:
            return (fallback_frame(loaded.module, addr),)
        for part, cache in zip(stored.parts, stored.symcaches, strict=True):
            rel = addr - part.load_address
            if not 0 <= rel <= 0xFFFFFFFF:
                continue
            try:
                locs = cache.lookup(rel)
            except SymbolicError:
                continue
            if not locs:
                continue
            outer = locs[-1]
            symbol_only = outer.lang == "unknown" and not outer.full_path and not outer.line
            if symbol_only and not stored.extents.covers(outer.sym_addr + part.load_address, addr):
                continue
            return self._frames(loaded, addr, locs, part.load_address)
        plt = loaded.plt_name(addr)  # stubs have no symbols: only addresses that found none pay for this
        if plt is not None:
            return (NativeFrame(function=plt),)
        return (fallback_frame(loaded.module, addr),)

    def _frames(self, loaded: _Loaded, addr: int, locs: list, load_address: int) -> tuple[NativeFrame, ...]:
        """Turn SymCache locations (innermost first) into frames (outermost first)."""
        assert loaded.stored is not None
        containing = loaded.stored.extents.containing(addr)
        frames = []
        for depth, loc in enumerate(reversed(locs)):
            outermost = depth == 0
            raw = loc.symbol or ""
            entry: int | None = None
            if outermost:
                entry = loc.sym_addr + load_address if loc.sym_addr != _INLINE_ENTRY else None
                # The sized symbol holding addr names the function: it prefers a global name over local
                # aliases at the same address (__libc_start_main, not __libc_start_main_alias_2) and a
                # function over another one's .cold part.
                if containing is not None:
                    entry, raw = containing
                raw = raw.partition("@")[0]  # symbol version (memcpy@@GLIBC_2.14)
            base = _CLONE_SUFFIX.sub("", raw) if outermost else raw
            function = demangle(base) if base else f"{loaded.module}+0x{addr:x}"
            bare = not outermost and loc.lang == "cpp" and _BARE_NAME.match(raw)
            scoped = self._scoped(loaded, addr, raw, loc.line) if bare else None
            if scoped is not None:
                function, start = scoped
                raw = function
            else:
                start = self._start_line(loaded, addr, loc.symbol or raw, raw, entry)
            frames.append(
                NativeFrame(
                    function=function,
                    system_name=raw if raw != function else "",
                    file=loc.full_path or "",
                    line=loc.line,
                    inlined=depth != 0,
                    start_line=start,
                )
            )
        return tuple(frames)

    def _lines(self, loaded: _Loaded) -> StartLines | None:
        if not loaded.dwarf_path:
            return None
        if loaded.start_lines is None:
            loaded.start_lines = StartLines(loaded.dwarf_path)
        return loaded.start_lines

    def _scoped(self, loaded: _Loaded, addr: int, name: str, line: int) -> tuple[str, int] | None:
        """(`ns::Class::name`, start line) for an inlined frame SymCache knows by a bare name only."""
        lines = self._lines(loaded)
        found = lines.qualified_name(addr, name, line) if lines is not None else None
        if found is None:
            return None
        self.stats["native.inline_names_qualified"] += 1
        return found[0], found[1] if self._want_start_lines else 0

    def _start_line(self, loaded: _Loaded, addr: int, name: str, alt: str, entry: int | None) -> int:
        lines = self._lines(loaded) if self._want_start_lines else None
        if lines is None:
            return 0
        line = lines.start_line(addr, name, entry)
        if not line and alt != name:
            line = lines.start_line(addr, alt, entry)
        return line


def _make_symcache(path: str) -> SymCache:
    """Build the SymCache of the (single) object in the ELF file at `path`."""
    archive = Archive.open(path)
    for obj in archive.iter_objects():
        return obj.make_symcache()
    raise ElfError(f"{path}: no object in file")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
