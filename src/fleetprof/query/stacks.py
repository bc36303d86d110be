"""Fetch the stacks of a selection with their sample counts, frames resolved through late symbols.

Every query (flame graph, top functions, sandwich, diff, export) starts here: samples are summed per stack
in ClickHouse, then stacks and frames are read by id and raw native frames are expanded into their symbol
rows (outermost first) or named `module+0xADDR` while no symbols have arrived.
"""

from __future__ import annotations

import contextlib
import gc
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetprof.profile.model import FrameKind
from fleetprof.query.selection import Selection

KIND_NAMES = {int(k): k.name.lower() for k in FrameKind}


@dataclass(frozen=True)
class NodeKey:
    """One displayed frame: how flame graphs merge frames (Python by line, native by function+module)."""

    name: str
    kind: str
    function: str
    module: str = ""
    file: str = ""
    line: int = 0


@dataclass
class StackSet:
    """Stacks of a selection in CSR form: stack i is `flat[offsets[i]:offsets[i + 1]]` (key indexes, root
    first) with `counts[i]` samples; keys are interned NodeKeys, each mapped to a line-less function."""

    flat: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    stack_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    keys: list[NodeKey] = field(default_factory=list)
    func_of_key: list[int] = field(default_factory=list)  # key index -> function index
    functions: list[NodeKey] = field(default_factory=list)  # function identity (line dropped)
    total: int = 0
    cpu_seconds: float = 0.0

    @property
    def stacks(self) -> list[list[int]]:
        """Each stack's key indexes as a Python list (for per-stack walks over small sets)."""
        flat = self.flat.tolist()
        offs = self.offsets.tolist()
        return [flat[offs[i] : offs[i + 1]] for i in range(len(offs) - 1)]


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """Distinct values, sorted (numpy 2's hash-based `np.unique` is many times slower on millions of
    64-bit keys)."""
    if not len(values):
        return values
    ordered = np.sort(values)
    keep = np.ones(len(ordered), bool)
    keep[1:] = ordered[1:] != ordered[:-1]
    return ordered[keep]


def csr_take(values: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows `rows` of a CSR array (values, offsets) as a new CSR array, without a Python loop."""
    starts = offsets[rows]
    lens = offsets[rows + 1] - starts
    new_offsets = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lens, out=new_offsets[1:])
    index = np.repeat(starts - new_offsets[:-1], lens) + np.arange(new_offsets[-1], dtype=np.int64)
    return values[index], new_offsets


class _Interner:
    """Interns NodeKeys (for nodes) and their line-less function identities (for top functions)."""

    def __init__(self, out: StackSet) -> None:
        """Fill `out.keys`, `out.functions`, `out.func_of_key`."""
        self.out = out
        self.keys: dict[NodeKey, int] = {}
        self.funcs: dict[NodeKey, int] = {}

    def key(self, key: NodeKey) -> int:
        """Index of `key`, adding it (and its function identity) when new."""
        idx = self.keys.get(key)
        if idx is None:
            idx = self.keys[key] = len(self.out.keys)
            self.out.keys.append(key)
            func = NodeKey(
                key.function, key.kind, key.function, key.module, key.file if key.kind == "python" else ""
            )
            fidx = self.funcs.get(func)
            if fidx is None:
                fidx = self.funcs[func] = len(self.out.functions)
                self.out.functions.append(func)
            self.out.func_of_key.append(fidx)
        return idx


def _base(path: str) -> str:
    """Basename of a module path."""
    return path.rsplit("/", 1)[-1] or path


def _frame_keys(row: dict[str, Any], interner: _Interner) -> list[int]:
    """Key indexes (outermost first) a stored frame expands to, using its symbols when it is raw."""
    kind = KIND_NAMES.get(row["kind"], "native")
    module = _base(row["module"])
    if row["kind"] == int(FrameKind.NATIVE) and not row["function"]:
        names = row["sym_functions"] or []
        if not names:
            name = f"{module}+0x{row['address']:x}"
            return [interner.key(NodeKey(f"{name}", kind, name, module))]
        keys = []
        for i, fn in enumerate(names):
            file = row["sym_files"][i] if row["sym_files"] else ""
            line = row["sym_lines"][i] if row["sym_lines"] else 0
            keys.append(interner.key(NodeKey(f"{fn} [{module}]", kind, fn, module, file, line)))
        return keys
    fn = row["function"]
    if row["kind"] == int(FrameKind.PYTHON):
        name = f"{fn} ({row['file']}:{row['line']})" if row["file"] else fn
        return [interner.key(NodeKey(name, kind, fn, "", row["file"], row["line"]))]
    if row["kind"] == int(FrameKind.KERNEL):
        return [interner.key(NodeKey(f"{fn}_[k]", kind, fn, "[kernel]"))]
    if row["kind"] == int(FrameKind.NATIVE) and module:
        return [interner.key(NodeKey(f"{fn} [{module}]", kind, fn, module, row["file"], row["line"]))]
    return [interner.key(NodeKey(fn, kind, fn, module, row["file"], row["line"]))]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector, which rescans every node each time many are allocated."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def query_stacks(store: Any, ids_sub: str, params: dict[str, Any]) -> Any:
    """(stack_id, frame_ids) of the stacks `ids_sub` selects."""
    return store.query(
        f"SELECT stack_id, any(frame_ids) AS frame_ids FROM {store.t('stacks')} "
        f"WHERE stack_id GLOBAL IN ({ids_sub}) GROUP BY stack_id",
        params,
    )


def query_frames(store: Any, ids_sub: str, params: dict[str, Any]) -> Any:
    """Every frame of the stacks `ids_sub` selects, with the latest symbols of raw native frames."""
    frame_ids = f"SELECT arrayJoin(frame_ids) FROM {store.t('stacks')} WHERE stack_id GLOBAL IN ({ids_sub})"
    return store.query(
        "SELECT f.frame_id AS frame_id, f.kind AS kind, f.function AS function, f.file AS file, "
        "f.line AS line, f.start_line AS start_line, f.inlined AS inlined, f.system_name AS system_name, "
        "f.module AS module, f.file_id AS file_id, f.build_id AS build_id, f.address AS address, "
        "f.runtime AS runtime, "
        "s.functions AS sym_functions, s.files AS sym_files, s.lines AS sym_lines, "
        "s.start_lines AS sym_start_lines, s.inlined AS sym_inlined, s.system_names AS sym_system_names "
        "FROM (SELECT frame_id, any(kind) AS kind, any(function) AS function, any(file) AS file, "
        "any(line) AS line, any(start_line) AS start_line, any(inlined) AS inlined, "
        "any(system_name) AS system_name, any(module) AS module, any(file_id) AS file_id, "
        "any(build_id) AS build_id, any(address) AS address, any(runtime) AS runtime "
        f"FROM {store.t('frames')} WHERE frame_id GLOBAL IN ({frame_ids}) GROUP BY frame_id) AS f "
        "LEFT JOIN (SELECT file_id, address, argMax(functions, updated_at) AS functions, "
        "argMax(files, updated_at) AS files, argMax(lines, updated_at) AS lines, "
        "argMax(start_lines, updated_at) AS start_lines, argMax(inlined, updated_at) AS inlined, "
        "argMax(system_names, updated_at) AS system_names "
        f"FROM {store.t('symbols')} WHERE (file_id, address) GLOBAL IN (SELECT file_id, address FROM "
        f"{store.t('frames')} WHERE kind = 1 AND function = '' AND frame_id GLOBAL IN ({frame_ids})) "
        "GROUP BY file_id, address) AS s ON f.file_id = s.file_id AND f.address = s.address",
        params,
    )


@dataclass(frozen=True)
class Source:
    """Which rows a query sums: a samples table, and the pyramid level when it is the sampled table."""

    table: str = "samples"
    level: int = 0

    def condition(self) -> str:
        """Extra WHERE condition selecting the level (nothing for a plain table)."""
        return f" AND level = {int(self.level)}" if self.level else ""


class StackCache:
    """Frames of stacks already read, by stack id: content-addressed rows never change, so a bounded
    in-process memo is exact. Each distinct frame id gets a small index, so a query finds its frames with
    array gathers instead of sorting millions of ids. Frame rows themselves are read per query (their
    symbols may arrive at any time). Thread-safe."""

    def __init__(self, limit: int = 400_000) -> None:
        """An empty cache of at most `limit` stacks (forgotten all at once past it)."""
        self.limit = limit
        self.lock = threading.Lock()
        self.stacks: dict[int, bytes] = {}  # stack id -> frame indexes as int32 bytes
        self.index: dict[int, int] = {}  # frame id -> frame index
        self.frame_ids = np.zeros(1024, np.uint64)  # frame index -> frame id

    def put(self, ids: list[int], flat: np.ndarray, offsets: np.ndarray) -> None:
        """Remember stacks `ids` whose frame ids are CSR rows of (flat, offsets); hold `lock`."""
        if len(self.stacks) + len(ids) > self.limit:
            self.stacks.clear()
            self.index.clear()
        # A hash pass and a binary search of the few distinct ids, not `return_inverse`'s argsort of them
        # all: stacks share most frames (100 k stacks: 2.1 M entries, 2.4 k distinct; 0.15 s against 0.66).
        distinct = np.unique(flat)
        inverse = np.searchsorted(distinct, flat)
        slots = np.fromiter(
            (self.index.setdefault(f, len(self.index)) for f in distinct.tolist()), np.int64, len(distinct)
        )
        if len(self.index) > len(self.frame_ids):
            grown = np.zeros(max(2 * len(self.frame_ids), len(self.index)), np.uint64)
            grown[: len(self.frame_ids)] = self.frame_ids
            self.frame_ids = grown
        self.frame_ids[slots] = distinct
        data = slots[inverse].astype("<i4").tobytes()
        bounds = (offsets * 4).tolist()
        for i, sid in enumerate(ids):
            self.stacks[sid] = data[bounds[i] : bounds[i + 1]]


_caches: weakref.WeakKeyDictionary[Any, StackCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def stack_cache(store: Any) -> StackCache:
    """The stack cache of `store` (one per store object)."""
    with _caches_lock:
        cache = _caches.get(store)
        if cache is None:
            cache = _caches[store] = StackCache()
        return cache


def stack_frames(store: Any, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(flat frame indexes, offsets, found, frame index -> frame id) of stacks `ids` in their order,
    read from the stacks table once and from the cache after."""
    cache = stack_cache(store)
    wanted = ids.tolist()
    for _ in range(5):  # another thread may clear the cache between fetch and use: fetch again
        with cache.lock:
            known = cache.stacks
            missing = [sid for sid in wanted if sid not in known]
        fetched = [_fetch_stacks(store, missing[i : i + 100_000]) for i in range(0, len(missing), 100_000)]
        with cache.lock:
            for stack_ids, flat, offsets in fetched:
                cache.put(stack_ids, flat, offsets)
            known = cache.stacks
            if not all(sid in known for sid in missing):
                continue
            blobs = [known.get(sid, b"") for sid in wanted]
            found = np.fromiter((sid in known for sid in wanted), bool, len(wanted))
            frame_ids = cache.frame_ids[: len(cache.index)].copy()
        break
    lens = np.fromiter(map(len, blobs), np.int64, len(blobs)) // 4
    offsets = np.zeros(len(blobs) + 1, np.int64)
    np.cumsum(lens, out=offsets[1:])
    return np.frombuffer(b"".join(blobs), "<i4").astype(np.int64), offsets, found, frame_ids


def _fetch_stacks(store: Any, ids: list[int]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(stack ids, flat frame ids, offsets) of the stored stacks among `ids`. A stack stored twice (parts
    not merged yet) comes twice with the same frames, which the cache takes as one; no GROUP BY, which
    costs the query more than twice its time."""
    table = store.query(
        f"SELECT stack_id, frame_ids FROM {store.t('stacks')} WHERE stack_id IN {{ids:Array(UInt64)}}",
        {"ids": ids},
    )
    lists = table.column("frame_ids").combine_chunks()
    offsets = lists.offsets.to_numpy().astype(np.int64)
    return (
        table.column("stack_id").to_pylist(),
        lists.flatten().to_numpy().astype(np.uint64),
        offsets - offsets[0] if len(offsets) else np.zeros(1, np.int64),
    )


def query_frame_rows(store: Any, frame_ids: list[int]) -> Any:
    """Frames `frame_ids` with the latest symbols of the raw native ones."""
    frames = (
        "SELECT frame_id, any(kind) AS kind, any(function) AS function, any(file) AS file, "
        "any(line) AS line, any(start_line) AS start_line, any(inlined) AS inlined, "
        "any(system_name) AS system_name, any(module) AS module, any(file_id) AS file_id, "
        "any(build_id) AS build_id, any(address) AS address, any(runtime) AS runtime "
        f"FROM {store.t('frames')} WHERE frame_id IN {{fids:Array(UInt64)}} GROUP BY frame_id"
    )
    return store.query(
        "SELECT f.frame_id AS frame_id, f.kind AS kind, f.function AS function, f.file AS file, "
        "f.line AS line, f.start_line AS start_line, f.inlined AS inlined, f.system_name AS system_name, "
        "f.module AS module, f.file_id AS file_id, f.build_id AS build_id, f.address AS address, "
        "f.runtime AS runtime, s.functions AS sym_functions, s.files AS sym_files, s.lines AS sym_lines, "
        "s.start_lines AS sym_start_lines, s.inlined AS sym_inlined, s.system_names AS sym_system_names "
        f"FROM ({frames}) AS f "
        "LEFT JOIN (SELECT file_id, address, argMax(functions, updated_at) AS functions, "
        "argMax(files, updated_at) AS files, argMax(lines, updated_at) AS lines, "
        "argMax(start_lines, updated_at) AS start_lines, argMax(inlined, updated_at) AS inlined, "
        "argMax(system_names, updated_at) AS system_names "
        f"FROM {store.t('symbols')} WHERE (file_id, address) GLOBAL IN (SELECT file_id, address FROM "
        f"{store.t('frames')} WHERE frame_id IN {{fids:Array(UInt64)}} AND kind = 1 AND function = '') "
        "GROUP BY file_id, address) AS s ON f.file_id = s.file_id AND f.address = s.address",
        {"fids": frame_ids},
    )


def load_stacks(store: Any, sel: Selection, source: Source | None = None) -> StackSet:
    """Sum samples per stack over `sel` (raw samples or a pyramid level) and resolve their frames."""
    with gc_paused():
        return _load_stacks(store, sel, source or Source())


def _load_stacks(store: Any, sel: Selection, source: Source) -> StackSet:
    """load_stacks' body: one aggregation in SQL, stacks through the cache, frames by id."""
    where, params = sel.where(store)
    agg = store.query(
        f"SELECT stack_id, sum(count) AS c, sum(count / frequency) AS cpu FROM {store.t(source.table)} "
        f"WHERE {where}{source.condition()} GROUP BY stack_id",
        params,
    )
    out = StackSet()
    if agg.num_rows == 0:
        return out
    agg_ids = agg.column("stack_id").to_numpy().astype(np.uint64)
    st_values, st_offs, found, index_fids = stack_frames(store, agg_ids)
    present = np.flatnonzero(np.bincount(st_values, minlength=len(index_fids)))
    frames = query_frame_rows(store, index_fids[present].tolist()) if len(present) else None
    interner = _Interner(out)
    missing = interner.key(NodeKey("[missing frame]", "error", "[missing frame]"))
    # Frames: CSR rows of key indexes (a raw frame may expand to an inlined chain), the last row for frames
    # that were not found; `row_of` maps a frame index to its row.
    frame_keys: list[int] = []
    frame_offsets = [0]
    row_of = np.full(len(index_fids) + 1, -1, np.int64)
    if frames is not None:
        slot = {int(f): i for i, f in zip(present.tolist(), index_fids[present].tolist(), strict=True)}
        for row in frames.to_pylist():
            row_of[slot[row["frame_id"]]] = len(frame_offsets) - 1
            frame_keys += _frame_keys(row, interner)
            frame_offsets.append(len(frame_keys))
    frame_keys.append(missing)
    frame_offsets.append(len(frame_keys))
    row_of[row_of < 0] = len(frame_offsets) - 2
    fkeys = np.asarray(frame_keys, np.int64)
    foffs = np.asarray(frame_offsets, np.int64)
    if found.all():
        fidx, s_offs = st_values, st_offs
    else:  # a stack that is missing gets one missing frame: a one-element row appended for it
        st_values = np.append(st_values, len(index_fids))
        st_offs = np.append(st_offs, st_offs[-1] + 1)
        rows = np.where(found, np.arange(len(agg_ids)), len(st_offs) - 2)
        fidx, s_offs = csr_take(st_values, st_offs, rows)
    frow = row_of[fidx]
    if (foffs[1:] - foffs[:-1] == 1).all():  # every frame one key (no inlined chains): a plain lookup
        out.flat, out.offsets = fkeys[foffs[:-1]][frow], s_offs
    else:
        out.flat, expanded_offs = csr_take(fkeys, foffs, frow)
        out.offsets = expanded_offs[s_offs]
    out.counts = agg.column("c").to_numpy().astype(np.int64)
    out.stack_ids = agg_ids
    out.cpu_seconds = float(np.sum(agg.column("cpu").to_numpy()))
    out.total = int(out.counts.sum())
    return out
