"""Central (server-side) symbolization by (file id, address), from uploaded bundles, else debuginfod.

The server has no copy of the hosts' files. For a file id it uses, in order: the bundle already loaded
in memory, the bundle kept in its disk cache, the bundle an agent uploaded (`get_bundle`), or a bundle
built from the debug file a debuginfod server has for the build id (`DEBUGINFOD_URLS`). Lookups run
through the same code as host-side symbolization (`lookup.FileSymbols`), so frames match, inline frames
included. Addresses that can't be resolved are left out of the answer: the caller shows
`module+0xoffset` and asks again once symbols arrive (a file without symbols is not remembered as
such, so a bundle uploaded later is used on the next call). Each (file id, address) is looked up once
per loaded file and memoized.
"""

from __future__ import annotations

import gc
import mmap
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from fleetprof.profile.model import Frame, FrameKind, Mapping
from fleetprof.symbolize.batch import BatchLookup, Record, records
from fleetprof.symbolize.bundle import Bundle, BundleError, build_bundle, load_bundle, write_bundle
from fleetprof.symbolize.debuginfod import DebuginfodClient
from fleetprof.symbolize.lookup import FileSymbols
from fleetprof.symbolize.lru import BoundedLru
from fleetprof.symbolize.native import NativeFile

MEMO_ENTRIES = 1 << 17  # memoized (file, address) answers in all; the memo restarts when full (~50 MB)
_CACHE_SUFFIX = ".fpsb"


@dataclass(slots=True)
class _Entry:
    """A loaded file: its lookup tables, default mapping and memoized answers."""

    bundle: Bundle
    symbols: FileSymbols
    mapping: Mapping
    batch: BatchLookup
    memo: dict[int, tuple[Frame, ...]] = field(default_factory=dict)

    def close(self) -> None:
        """Release the lookup tables' resources."""
        self.symbols.close()


class CentralSymbolizer:
    """Symbolizes native addresses by file id on a server that has no copy of the files."""

    def __init__(
        self,
        get_bundle: Callable[[str], bytes | None],
        cache_dir: Path,
        debuginfod: DebuginfodClient | Literal["environment"] | None = "environment",
        max_files: int = 32,
        start_lines: bool = True,
        memo_entries: int = MEMO_ENTRIES,
    ) -> None:
        """`get_bundle(file_id)` returns an uploaded bundle or None; `cache_dir` keeps loaded bundles
        (for fast reloads); `debuginfod` defaults to the servers in `DEBUGINFOD_URLS`.
        Memory is bounded by `max_files` loaded bundles and `memo_entries` memoized answers."""
        self._get_bundle = get_bundle
        self._cache_dir = Path(cache_dir)
        self._debuginfod = DebuginfodClient.from_environment() if debuginfod == "environment" else debuginfod
        self._start_lines = start_lines
        self._memo_entries = memo_entries
        self._memo_size = 0
        self._files: BoundedLru[str, _Entry] = BoundedLru(max_files, on_evict=self._evicted)
        self._lock = threading.RLock()
        self.problems: dict[str, str] = {}  # file id -> why its symbols are unavailable or limited
        self.stats: Counter[str] = Counter()

    def symbolize(
        self, file_id: str, build_id: str, addresses: Iterable[int], path: str = ""
    ) -> dict[int, tuple[Frame, ...]]:
        """NATIVE frames (outermost first) per ELF address of the file; unresolvable addresses are left
        out. `path` names the mapping of the frames when the bundle doesn't (debuginfod)."""
        with self._lock, _collector_paused():
            entry = self._entry(file_id, build_id, path)
            if entry is None:
                self.stats["central.addresses_without_symbols"] += 1
                return {}
            memo, mapping = entry.memo, entry.mapping
            out: dict[int, tuple[Frame, ...]] = {}
            asked = dict.fromkeys(addresses)  # once each, in order
            if memo and not asked.keys().isdisjoint(memo.keys()):
                new: list[int] = []
                for addr in asked:
                    frames = memo.get(addr)
                    if frames is None:
                        new.append(addr)
                    elif frames:
                        out[addr] = frames
            else:  # nothing memoized yet: no address is looked at twice
                new = list(asked)
            looked_up = len(new)
            if new:
                self._answer(entry, new, out)
            self.stats["central.lookups"] += looked_up
            if path and path != mapping.path:  # another process names the file differently
                named = replace(mapping, path=path)
                out = {a: tuple(replace(f, mapping=named) for f in fs) for a, fs in out.items()}
            return out

    def _answer(self, entry: _Entry, addrs: list[int], out: dict[int, tuple[Frame, ...]]) -> None:
        """Look up addresses not memoized yet (all at once), memoize them, and put the known into `out`."""
        try:
            found = entry.batch.resolve(addrs)
        except Exception:  # a library bug must not lose the batch: each address alone, the failing left out
            found = [_scalar(entry, addr) for addr in addrs]
        mapping, native_kind = entry.mapping, FrameKind.NATIVE
        built: list[tuple[Frame, ...]] = []
        keep = built.append
        for addr, answer in zip(addrs, found, strict=True):
            # Positional: the fields of `modelframes.native_model_frames`, without its per-frame keyword
            # parsing (the equality tests against the host path hold them together).
            if not answer:
                keep(())
            elif len(answer) == 1:
                ((function, system, file, line, inlined, start),) = answer
                keep((Frame(native_kind, function, file, line, mapping, addr, inlined, start, system),))
            else:
                keep(
                    tuple(
                        [
                            Frame(native_kind, function, file, line, mapping, addr, inlined, start, system)
                            for function, system, file, line, inlined, start in answer
                        ]
                    )
                )
        if () in built:
            out.update([(addr, frames) for addr, frames in zip(addrs, built, strict=True) if frames])
        else:
            out.update(zip(addrs, built, strict=True))
        kept = min(len(addrs), self._memo_entries)  # a batch larger than the memo keeps its last answers
        if self._memo_entries - self._memo_size < kept:
            self._forget_answers()
        entry.memo.update(zip(addrs[-kept:], built[-kept:], strict=True) if kept else ())
        self._memo_size += kept

    def has_symbols(self, file_id: str, build_id: str = "") -> bool:
        """Whether symbols for the file can be had now (loads them when they can)."""
        with self._lock:
            return self._entry(file_id, build_id, "") is not None

    def close(self) -> None:
        """Drop every loaded file (after its disk cache copy is written)."""
        with self._lock:
            self.flush()
            self._files.clear()
            self._memo_size = 0

    def flush(self) -> None:
        """Wait until the bundles loaded so far are in the disk cache."""
        with _WRITING_LOCK:
            paths = list(_WRITING)
        for path in paths:
            _written(path)

    def _evicted(self, entry: _Entry) -> None:
        self._memo_size -= len(entry.memo)
        entry.close()

    def _forget_answers(self) -> None:
        """Empty every loaded file's memo (the store keeps answers; this only bounds memory)."""
        for entry in self._files.values():
            entry.memo.clear()
            entry.symbols.forget()
            entry.batch.forget()
        self._memo_size = 0

    def _entry(self, file_id: str, build_id: str, path: str) -> _Entry | None:
        entry = self._files.get(file_id)
        if entry is not None:
            return entry
        bundle = self._load(file_id, build_id, path)
        if bundle is None:
            return None
        symbols = bundle.file_symbols(self._start_lines, self.stats)
        mapping = Mapping(file_id=file_id, path=bundle.path or path, build_id=bundle.build_id or build_id)
        entry = _Entry(bundle, symbols, mapping, BatchLookup(symbols, bundle.outer_names))
        if bundle.note:
            self.problems.setdefault(file_id, bundle.note)
        self._files.put(file_id, entry)
        return entry

    def _load(self, file_id: str, build_id: str, path: str) -> Bundle | None:
        """The file's bundle: disk cache, else uploaded, else debuginfod; None when there is none yet."""
        cached = self._cache_path(file_id)
        if cached is not None:
            _written(cached)
        if cached is not None and cached.is_file():
            bundle = _load_mapped(cached)
            if bundle is not None and bundle.file_id == file_id:
                self.stats["central.cache_loads"] += 1
                if not bundle.inflates_fast:  # a zlib upload, kept as it came: uncompressed from now on
                    self._keep(cached, bundle, None)
                return bundle
            cached.unlink(missing_ok=True)
        data = self._uploaded(file_id)
        origin = "central.bundles_uploaded"
        if data is None and build_id:
            data = self._from_debuginfod(file_id, build_id, path)
            origin = "central.bundles_debuginfod"
        if data is None:
            return None
        try:
            bundle = load_bundle(data)
        except BundleError as exc:
            self.problems[file_id] = str(exc)
            return None
        if bundle.file_id != file_id:
            self.problems[file_id] = f"bundle is for file id {bundle.file_id}, not {file_id}"
            return None
        self.stats[origin] += 1
        self.problems.pop(file_id, None)
        self._keep(cached, bundle, data)
        return bundle

    def _uploaded(self, file_id: str) -> bytes | None:
        try:
            return self._get_bundle(file_id)
        except Exception as exc:  # the store's trouble must not stop symbolization of other files
            self.problems[file_id] = f"get_bundle failed: {type(exc).__name__}: {exc}".splitlines()[0][:300]
            return None

    def _from_debuginfod(self, file_id: str, build_id: str, path: str) -> bytes | None:
        """A bundle built from what debuginfod has for `build_id`: the debug file and, when served, the
        executable (for its PLT stubs and dynamic symbols); None when it has neither."""
        if self._debuginfod is None:
            return None
        debug = self._debuginfod.debuginfo(build_id)
        binary = self._debuginfod.executable(build_id)
        if not debug.path and not binary.path:
            self.problems[file_id] = debug.reason
            return None
        name = path or f"/buildid/{build_id}"
        file = NativeFile(file_id, name, open_path=binary.path or debug.path, build_id=build_id)
        debug_path = debug.path if binary.path else ""
        try:
            return build_bundle(
                file, debug_dirs=(), debug_path=debug_path, compress=False, origin="debuginfod"
            )
        except BundleError as exc:
            self.problems[file_id] = f"debuginfod file unusable: {exc}"
            return None

    def _keep(self, cached: Path | None, bundle: Bundle, data: bytes | None) -> None:
        """Keep the bundle in the disk cache (best effort: without it, only speed is lost), written by a
        thread of its own while lookups go on; a reader of the file waits for it. A bundle is kept as
        it came (`data`): writing and summing node's 27 MB uncompressed costs 45 ms of CPU, more than
        inflating its zstd sections (30 ms) on a restart. Without `data` (a zlib bundle read back from
        the cache: zlib inflates at half zstd's speed) it is kept uncompressed, read in place through
        mmap from then on."""
        if cached is None:
            return

        def write() -> None:
            try:
                cached.parent.mkdir(parents=True, exist_ok=True)
                if data is not None:
                    write_bundle(cached, data)
                else:
                    bundle.write_uncompressed(cached)
            except OSError as exc:
                self.problems.setdefault("cache", f"symbol cache {self._cache_dir}: {exc}".splitlines()[0])
            finally:
                with _WRITING_LOCK:
                    if _WRITING.get(cached) is threading.current_thread():
                        del _WRITING[cached]

        writer = threading.Thread(target=write, name="fleetprof-symbol-cache")
        with _WRITING_LOCK:
            _WRITING[cached] = writer
        writer.start()

    def _cache_path(self, file_id: str) -> Path | None:
        if len(file_id) < 3 or not all(c in "0123456789abcdef" for c in file_id):
            return None
        return self._cache_dir / file_id[:2] / f"{file_id}{_CACHE_SUFFIX}"


_WRITING: dict[Path, threading.Thread] = {}  # disk cache files being written, in every symbolizer
_WRITING_LOCK = threading.Lock()


def _written(path: Path) -> None:
    """Wait for a write of `path` under way in this process, if there is one."""
    with _WRITING_LOCK:
        writer = _WRITING.get(path)
    if writer is None:
        return
    writer.join()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a batch runs: its frames hold no cycles, and a batch of
    tens of thousands of new objects would otherwise trigger full collections over every memoized one.
    At the end the batch's objects join the oldest generation unscanned (a freeze and unfreeze: two list
    splices) instead of being traversed by the young collection the first allocation would start;
    skipped when something else keeps objects frozen."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        gc.enable()


def _scalar(entry: _Entry, addr: int) -> tuple[Record, ...] | None:
    """One address through the scalar path; None when it fails (a library bug) or is unknown."""
    try:
        return records(entry.symbols.resolve(addr))
    except Exception:
        return None


def _load_mapped(path: Path) -> Bundle | None:
    """A cached bundle read through mmap (its SymCaches stay in the page cache); None when unusable."""
    try:
        with open(path, "rb") as stream:
            mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        return load_bundle(mapped)
    except (OSError, ValueError):  # BundleError is a ValueError; an empty file can't be mapped
        return None
