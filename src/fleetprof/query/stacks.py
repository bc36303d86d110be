"""Fetch the stacks of a selection with their sample counts, frames resolved through late symbols.

Every query (flame graph, top functions, sandwich, diff, export) starts here: samples are summed per stack
in ClickHouse, then stacks and frames are read by id and raw native frames are expanded into their symbol
rows (outermost first) or named `module+0xADDR` while no symbols have arrived.
"""

from __future__ import annotations

import contextlib
import gc
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


def load_stacks(store: Any, sel: Selection, source: str = "samples") -> StackSet:
    """Sum samples per stack over `sel` (from `source`: raw samples or a pyramid level) and resolve frames."""
    with gc_paused():
        return _load_stacks(store, sel, source)


def _load_stacks(store: Any, sel: Selection, source: str) -> StackSet:
    """load_stacks' body."""
    where, params = sel.where(store)
    samples = store.t(source)
    agg = store.query(
        f"SELECT stack_id, sum(count) AS c, sum(count / frequency) AS cpu FROM {samples} "
        f"WHERE {where} GROUP BY stack_id",
        params,
    )
    out = StackSet()
    if agg.num_rows == 0:
        return out
    ids_sub = f"SELECT DISTINCT stack_id FROM {samples} WHERE {where}"
    stacks = query_stacks(store, ids_sub, params)
    frames = query_frames(store, ids_sub, params)
    interner = _Interner(out)
    missing = interner.key(NodeKey("[missing frame]", "error", "[missing frame]"))
    # Frames: id -> CSR row of key indexes (a raw frame may expand to an inlined chain).
    frame_ids = frames.column("frame_id").to_numpy().astype(np.uint64)
    frame_keys: list[int] = []
    frame_offsets = [0]
    for row in frames.to_pylist():
        frame_keys += _frame_keys(row, interner)
        frame_offsets.append(len(frame_keys))
    frame_keys.append(missing)  # the last row: frames that were not found
    frame_offsets.append(len(frame_keys))
    order = np.argsort(frame_ids)
    sorted_fids = frame_ids[order]
    fkeys = np.asarray(frame_keys, np.int64)
    foffs = np.asarray(frame_offsets, np.int64)
    # Stacks in the order of `agg`, as CSR rows of frame ids.
    agg_ids = agg.column("stack_id").to_numpy().astype(np.uint64)
    st_ids = stacks.column("stack_id").to_numpy().astype(np.uint64)
    lists = stacks.column("frame_ids").combine_chunks()
    st_values = lists.flatten().to_numpy().astype(np.uint64)
    st_offs = lists.offsets.to_numpy().astype(np.int64)
    st_order = np.argsort(st_ids)
    pos = np.searchsorted(st_ids[st_order], agg_ids).clip(0, max(len(st_ids) - 1, 0))
    found = (st_ids[st_order][pos] == agg_ids) if len(st_ids) else np.zeros(len(agg_ids), bool)
    rows = np.where(found, st_order[pos] if len(st_ids) else 0, -1)
    # A stack that is missing gets one missing frame: append a one-element row for it.
    st_values = np.append(st_values, np.uint64(0))
    st_offs = np.append(st_offs, st_offs[-1] + 1)
    rows = np.where(rows < 0, len(st_offs) - 2, rows)
    fids, s_offs = csr_take(st_values, st_offs, rows)
    fpos = np.searchsorted(sorted_fids, fids).clip(0, max(len(sorted_fids) - 1, 0))
    hit = (sorted_fids[fpos] == fids) if len(sorted_fids) else np.zeros(len(fids), bool)
    frow = np.where(hit, order[fpos] if len(sorted_fids) else 0, len(foffs) - 2)
    out.flat, expanded_offs = csr_take(fkeys, foffs, frow)
    out.offsets = expanded_offs[s_offs]
    out.counts = agg.column("c").to_numpy().astype(np.int64)
    out.stack_ids = agg_ids
    out.cpu_seconds = float(np.sum(agg.column("cpu").to_numpy()))
    out.total = int(out.counts.sum())
    return out
