"""Native symbolization: (file, ELF virtual addresses) -> frames, outermost function first.

Sources, merged: the binary's .symtab/.dynsym and DWARF, and a separate debug file found by build id or
`.gnu_debuglink` (CRC-checked). Each is turned into a `symbolic` SymCache once per file id (on disk
and in a bounded in-memory LRU). A file that can't be read or parsed degrades its addresses to
`module+0xADDR` and leaves a one-line reason in `problems`; nothing raises to the caller.
"""

from __future__ import annotations

import os
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
from fleetprof.symbolize.extents import CodeExtents, read_code_extents
from fleetprof.symbolize.golang.symbols import open_go_symbols
from fleetprof.symbolize.lookup import FileSymbols, NativeFrame, Part, fallback_frame
from fleetprof.symbolize.lru import BoundedLru
from fleetprof.symbolize.minidebuginfo import SECTION, minidebuginfo_file
from fleetprof.symbolize.plt import read_plt_names
from fleetprof.symbolize.startline import StartLines
from fleetprof.symbolize.symcache_reader import make_reader
from fleetprof.symbolize.symcache_store import PartInfo, StoredSymbols, SymcacheStore

__all__ = ["NativeFile", "NativeFrame", "NativeSymbolizer", "collect_symbols", "fallback_frame"]
_MEMO_LIMIT = 1 << 16


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


@dataclass(slots=True)
class _Loaded:
    """A file's symbols as kept in memory."""

    module: str
    stored: StoredSymbols | None
    failure: str = ""
    symbols: FileSymbols | None = None
    memo: dict[int, tuple[NativeFrame, ...]] = field(default_factory=dict)

    def close(self) -> None:
        """Release the DWARF mapping used for start lines."""
        if self.symbols is not None:
            self.symbols.close()


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
                    symbols = loaded.symbols
                    frames = symbols.lookup(addr) if symbols else (fallback_frame(loaded.module, addr),)
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
        symbols = self._file_symbols(file, stored)
        go, problem = open_go_symbols(file.open_path or file.path)
        if go is not None:  # a Go binary: its pclntab names what SymCache can't (stripped) or lacks
            symbols.go = go
            stored.note = ""  # "stripped" no longer limits it
            self.stats["native.go_files"] += 1
        elif problem:
            stored.note = f"{stored.note}; {problem}" if stored.note else problem
        return _Loaded(file.module, stored, symbols=symbols)

    def _file_symbols(self, file: NativeFile, stored: StoredSymbols) -> FileSymbols:
        """The lookup tables of a loaded entry: its SymCaches, extents, and the file for PLT and DWARF."""
        read_path = file.open_path or file.path
        dwarf_path = read_path if stored.dwarf_path == "self" else stored.dwarf_path
        return FileSymbols(
            module=file.module,
            parts=[
                Part(info.load_address, cache, make_reader(cache))
                for info, cache in zip(stored.parts, stored.symcaches, strict=True)
            ],
            extents=stored.extents,
            open_lines=lambda: StartLines(dwarf_path) if dwarf_path else None,
            open_plt=lambda: read_plt_names(read_path),
            want_start_lines=self._want_start_lines,
            stats=self.stats,
        )

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
        return collect_symbols(file, self._debug_dirs, self._debuginfod, self.stats)


def collect_symbols(
    file: NativeFile,
    debug_dirs: tuple[str, ...] = DEFAULT_DEBUG_DIRS,
    debuginfod: DebuginfodClient | None = None,
    stats: Counter[str] | None = None,
    debug_path: str = "",
) -> StoredSymbols | str:
    """SymCaches and code extents of `file`, its debug file (`debug_path`, else looked up) and its
    MiniDebugInfo, looked up in that order; a one-line reason string when the file can't be read."""
    open_path = file.open_path or file.path
    try:
        info = read_elf_info(open_path)
    except ElfError as exc:
        return str(exc)
    build_id = info.build_id or file.build_id
    notes: list[str] = []
    debug = debug_path
    if not info.has_debug_info and not debug:
        debug = _find_debug(file, info, build_id, notes, debug_dirs, debuginfod, stats)
    elif info.has_debug_info:
        debug = ""
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


def _find_debug(
    file: NativeFile,
    info: ElfInfo,
    build_id: str,
    notes: list[str],
    debug_dirs: tuple[str, ...],
    debuginfod: DebuginfodClient | None,
    stats: Counter[str] | None,
) -> str:
    """The separate debug file: build-id path or `.gnu_debuglink` under each root, then debuginfod."""
    roots = [file.root, ""] if file.root else [""]
    for root in roots:
        found = find_debug_file(
            file.path, build_id, info.debuglink, info.debuglink_crc, debug_dirs, root=root
        )
        if found:
            return found
    if debuginfod is not None and build_id:
        fetched = debuginfod.debuginfo(build_id)
        if fetched.downloaded and stats is not None:
            stats["native.debuginfod_downloads"] += 1
        if fetched.path:
            return fetched.path
        notes.append(fetched.reason)
    if info.debuglink:
        notes.append(f"debug file {info.debuglink} not found")
    return ""


def _make_symcache(path: str) -> SymCache:
    """Build the SymCache of the (single) object in the ELF file at `path`."""
    archive = Archive.open(path)
    for obj in archive.iter_objects():
        return obj.make_symcache()
    raise ElfError(f"{path}: no object in file")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
