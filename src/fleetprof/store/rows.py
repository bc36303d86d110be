"""Turn `Profile`s into the rows of the store's tables: frames and stacks by hash, samples per second.

A group of profiles is built at once with numpy and Arrow (the per-call costs of both are paid per group,
not per sample); a sample's timestamps become one row per second with a count.

Frame and stack ids are 64-bit BLAKE2b hashes of their content, so every host, process and batch that sees
the same frame or stack writes the same id. A raw native frame (function "") is identified by its file id
and address alone: symbols for it live in the `symbols` table and apply to every sample that ever used it.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import operator
import struct
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import pyarrow as pa

from fleetprof.profile.columns import ColumnarProfile, as_columns, concat
from fleetprof.profile.model import Frame, FrameKind, Profile


def frame_id(frame: Frame) -> int:
    """Content hash of a frame; raw native frames hash only (file id, address)."""
    mapping = frame.mapping
    if frame.kind is FrameKind.NATIVE and not frame.function and mapping is not None:
        key = f"raw\0{mapping.file_id}\0{frame.address}"
    else:
        key = "\0".join(
            (
                str(int(frame.kind)),
                frame.function,
                frame.file,
                str(frame.line),
                str(frame.start_line),
                "1" if frame.inlined else "0",
                frame.system_name,
                mapping.file_id if mapping else "",
                mapping.path if mapping else "",
                str(frame.address),
                getattr(frame, "runtime", ""),
            )
        )
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little")


def frame_key(frame: Frame) -> tuple[object, ...]:
    """What `frame_id` hashes, as a tuple: (file id, address) of raw native frames, else every field."""
    mapping = frame.mapping
    if mapping is not None and not frame.function and frame.kind is FrameKind.NATIVE:
        return (mapping.file_id, frame.address)
    return (
        int(frame.kind),
        frame.function,
        frame.file,
        frame.line,
        frame.start_line,
        frame.inlined,
        frame.system_name,
        mapping.file_id if mapping else "",
        mapping.path if mapping else "",
        frame.address,
        getattr(frame, "runtime", ""),
    )


def stack_id(frame_ids: Iterable[int]) -> int:
    """Content hash of a stack: its frame ids, root first."""
    ids = list(frame_ids)
    packed = struct.pack(f"<{len(ids)}Q", *ids)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little")


def resource_of(profile: Profile | ColumnarProfile) -> dict[str, str | int]:
    """The profile's OTel resource attributes, with the host name filled in from older fields."""
    resource = dict(getattr(profile, "resource", None) or {})
    resource.setdefault("host.name", profile.hostname)
    resource.setdefault("host.id", resource.get("host.name", ""))
    if profile.kernel_release:
        resource.setdefault("os.version", profile.kernel_release)
    return resource


@dataclass
class IdCache:
    """Ids memoized across batches and the (stack, frame) rows already stored per week; each bounded.

    `frame_ids` maps a frame's content to its id (hashed once), `stack_ids` a stack's frame ids to its id;
    `stacks_written` and `frames_written` hold the week each id's row was last inserted, so a known stack
    costs no row at all.
    `stack_objects` and `frame_objects` map `id()` of a stack tuple or frame object seen before to (that
    object, its frame ids or id): the decoder hands out one object per distinct stack and frame across
    requests, so a known stack costs a dict lookup. Each entry holds its object, so its `id()` stays its own.
    """

    limit: int = 500_000
    identity_limit: int = 200_000
    frame_ids: dict[tuple[object, ...], int] = field(default_factory=dict)
    stack_ids: dict[tuple[int, ...], int] = field(default_factory=dict)
    stack_bytes: dict[bytes, int] = field(default_factory=dict)  # frame ids as little-endian u64 -> id
    stack_objects: dict[int, tuple[tuple[Frame, ...], bytes, int]] = field(default_factory=dict)
    frame_objects: dict[int, tuple[Frame, int]] = field(default_factory=dict)
    groups: int = 0  # groups built, for `learn_identities`
    stacks_written: dict[int, int] = field(default_factory=dict)  # stack id -> week of its last row
    frames_written: dict[int, int] = field(default_factory=dict)  # frame id -> week of its last row
    executables: set[tuple[str, str, str, int]] = field(default_factory=set)  # (file id, build, path, week)

    def trim(self) -> None:
        """Forget a memo when it outgrows its bound (ids are recomputed, rows written again)."""
        if len(self.frame_ids) > self.limit:
            self.frame_ids.clear()
        if len(self.stack_ids) > self.limit:
            self.stack_ids.clear()
        if len(self.stack_bytes) > self.limit:
            self.stack_bytes.clear()
        if len(self.stack_objects) > self.identity_limit:
            self.stack_objects.clear()
        if len(self.frame_objects) > self.identity_limit:
            self.frame_objects.clear()
        if len(self.stacks_written) > 2 * self.limit:
            self.stacks_written.clear()
        if len(self.frames_written) > 2 * self.limit:
            self.frames_written.clear()
        if len(self.executables) > self.limit:
            self.executables.clear()

    def commit(self, rows: Rows) -> None:
        """Remember the stacks, frames and executables of `rows` as stored (call once they are)."""
        self.stacks_written.update(dict.fromkeys(rows.pending_stacks, rows.week))
        self.frames_written.update(dict.fromkeys(rows.pending_frames, rows.week))
        self.executables |= rows.pending_executables

    def frame(self, frame: Frame) -> int:
        """Cached `frame_id`, memoized by a plain tuple of the frame's content (tuples of str and int hash
        and compare in C, several times faster than the dataclass's own hash and eq)."""
        key = frame_key(frame)
        fid = self.frame_ids.get(key)
        if fid is None:
            fid = self.frame_ids[key] = frame_id(frame)
        return fid

    def learn_identities(self, hits: int, distinct: int) -> bool:
        """Whether to remember this group's new stack and frame objects by identity: when objects recur
        (a quarter of its distinct stacks were known), when nothing is known yet, and every 16th group
        else (profiles whose objects never recur, like per-request copies, then pay almost nothing)."""
        self.groups += 1
        return 4 * hits >= distinct or not self.stack_objects or self.groups % 16 == 0

    def frame_of_object(self, frame: Frame) -> int:
        """`frame` by identity first (no content tuple for an object seen before), else by content."""
        hit = self.frame_objects.get(id(frame))
        if hit is not None:
            return hit[1]
        fid = self.frame(frame)
        self.frame_objects[id(frame)] = (frame, fid)
        return fid

    def stack(self, stack: tuple[Frame, ...]) -> tuple[int, tuple[int, ...]]:
        """Cached (stack id, frame ids)."""
        fids = tuple(self.frame(f) for f in stack)
        return self.stack_of(fids), fids

    def stack_of(self, fids: tuple[int, ...]) -> int:
        """Cached `stack_id` of frame ids."""
        sid = self.stack_ids.get(fids)
        if sid is None:
            sid = self.stack_ids[fids] = stack_id(fids)
        return sid

    def stack_of_bytes(self, key: bytes) -> int:
        """Cached `stack_id` of frame ids given as little-endian u64 bytes (what `stack_id` hashes)."""
        sid = self.stack_bytes.get(key)
        if sid is None:
            sid = self.stack_bytes[key] = int.from_bytes(
                hashlib.blake2b(key, digest_size=8).digest(), "little"
            )
        return sid


@dataclass
class Rows:
    """Arrow tables for one batch; `samples` is inserted last as the batch's commit point."""

    samples: pa.Table
    stacks: pa.Table
    frames: pa.Table
    executables: pa.Table
    host: pa.Table
    sample_count: int
    week: int  # of the rows' `day`: stacks and frames are written again once a week
    pending_stacks: list[int]  # stack ids of `stacks`, for IdCache.commit once the batch is committed
    pending_frames: list[int]  # frame ids of `frames`, likewise
    sample_counts: list[int] = field(default_factory=list)  # samples per profile of a group
    pending_executables: set[tuple[str, str, str, int]] = field(default_factory=set)


@dataclass
class _StackIds:
    """Stack ids of a list of stacks (a group's, one entry per sample or per distinct stack of a profile):
    `of_sample[i]` indexes the distinct stacks, which have `sids`, frame ids `keys` (root first,
    little-endian u64 bytes) and one representative tuple of frame objects."""

    of_sample: np.ndarray
    sids: list[int]
    keys: list[bytes]
    objects: list[tuple[Frame, ...]]


def _stack_keys(stacks: list[tuple[Frame, ...]], cache: IdCache, learn: bool) -> list[bytes]:
    """Frame ids (little-endian u64 bytes, root first) of distinct stack objects not known by identity.
    Distinct frame objects are found and their ids gathered in numpy; only each distinct frame object
    costs Python work, once (remembered by identity too when `learn`)."""
    if not stacks:
        return []
    flat = list(itertools.chain.from_iterable(stacks))
    object_ids = np.fromiter(map(id, flat), np.int64, len(flat))
    _, first, inverse = np.unique(object_ids, return_index=True, return_inverse=True)
    of_object = cache.frame_of_object if learn else cache.frame
    distinct_fids = np.fromiter(map(of_object, map(flat.__getitem__, first.tolist())), np.uint64, len(first))
    data = distinct_fids[inverse.reshape(-1)].astype("<u8").tobytes()
    bounds = np.zeros(len(stacks) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, stacks), np.int64, len(stacks)), out=bounds[1:])
    ends = (bounds * 8).tolist()
    return list(map(data.__getitem__, map(slice, ends[:-1], ends[1:])))


def _stack_ids(stacks: list[tuple[Frame, ...]], cache: IdCache) -> _StackIds:
    """Ids of the samples' stacks, each distinct stack object handled once: by identity when seen before
    (the decoder shares one object per distinct stack across requests), else by content (`_stack_keys`);
    each stack's id is memoized by the bytes of its frame ids (what `stack_id` hashes)."""
    n = len(stacks)
    if not n:
        return _StackIds(np.zeros(0, np.int64), [], [], [])
    object_ids = np.fromiter(map(id, stacks), np.int64, n)
    _, first, object_of_sample = np.unique(object_ids, return_index=True, return_inverse=True)
    order = np.argsort(first)  # distinct stacks in order of first use, as rows are written
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    distinct = [stacks[i] for i in first[order].tolist()]
    known = cache.stack_objects
    hits: list[tuple[tuple[Frame, ...], bytes, int] | None] = list(map(known.get, map(id, distinct)))
    misses = [i for i, hit in enumerate(hits) if hit is None]
    if misses:
        learn = cache.learn_identities(len(distinct) - len(misses), len(distinct))
        missing = [distinct[i] for i in misses]
        of_bytes = cache.stack_of_bytes
        for i, st, key in zip(misses, missing, _stack_keys(missing, cache, learn), strict=True):
            hits[i] = entry = (st, key, of_bytes(key))
            if learn:
                known[id(st)] = entry
    entries = cast(list[tuple[tuple[Frame, ...], bytes, int]], hits)  # every miss filled in above
    object_sids = np.fromiter(map(operator.itemgetter(2), entries), np.uint64, len(entries))
    _, first_sid, content_of_object = np.unique(object_sids, return_index=True, return_inverse=True)
    order_sid = np.argsort(first_sid)
    rank_sid = np.empty_like(order_sid)
    rank_sid[order_sid] = np.arange(len(order_sid))
    picks = first_sid[order_sid].tolist()
    return _StackIds(
        rank_sid[content_of_object.reshape(-1)][rank[object_of_sample.reshape(-1)]],
        object_sids[picks].tolist(),
        [entries[i][1] for i in picks],
        [distinct[i] for i in picks],
    )


def _dict_column(values: list[str], rows: np.ndarray) -> pa.DictionaryArray:
    """Per-sample strings taken at `rows`, dictionary-encoded (what LowCardinality columns take)."""
    encoded = pa.array(values, pa.string()).dictionary_encode()
    codes = encoded.indices.to_numpy(zero_copy_only=False)
    return pa.DictionaryArray.from_arrays(pa.array(codes[rows]), encoded.dictionary)


def _second_rows(
    counts: np.ndarray, bounds: np.ndarray, stamps: np.ndarray, default_s: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample index, unix second, count) per row: each sample's timestamps (`stamps[bounds[i]:bounds[i+1]]`)
    counted per second; a count beyond the timestamps goes to its last second, a sample without timestamps
    to its `default_s`."""
    n = len(counts)
    lens = np.diff(bounds)
    stamped = lens > 0
    # One entry per timestamp, plus one per timestamp-less sample; weights 1 (the leftover count goes to
    # the last timestamp of each sample).
    n_entries = np.where(stamped, lens, 1)
    owner = np.repeat(np.arange(n, dtype=np.int64), n_entries)
    secs = default_s[owner]
    entry_start = np.zeros(n + 1, np.int64)
    np.cumsum(n_entries, out=entry_start[1:])
    stamped_entries = np.repeat(stamped, n_entries)
    secs[stamped_entries] = stamps // 1_000_000_000
    weights = np.ones(len(owner), np.int64)
    last = entry_start[1:] - 1
    weights[last] += np.maximum(counts - np.where(stamped, lens, 1), 0)
    weights[last[~stamped]] = np.maximum(counts[~stamped], 1)
    order = np.lexsort((secs, owner))
    owner, secs, weights = owner[order], secs[order], weights[order]
    first = np.ones(len(owner), bool)
    first[1:] = (owner[1:] != owner[:-1]) | (secs[1:] != secs[:-1])
    starts = np.flatnonzero(first)
    return owner[starts], secs[starts], np.add.reduceat(weights, starts) if len(starts) else weights


def _new_frames(
    keys: list[bytes], stacks: list[tuple[Frame, ...]], cache: IdCache, week: int
) -> dict[int, Frame]:
    """Frame id -> frame of the frames in `stacks` (frame ids `keys`) with no row stored this `week`, in
    order of first appearance."""
    if not keys:
        return {}
    fids = np.frombuffer(b"".join(keys), "<u8")
    _, first = np.unique(fids, return_index=True)
    first.sort()
    distinct = fids[first].tolist()
    frame_week = cache.frames_written.get
    flat = list(itertools.chain.from_iterable(stacks))
    return {
        fid: flat[at]
        for fid, at, w in zip(distinct, first.tolist(), map(frame_week, distinct), strict=True)
        if w != week
    }


def build_rows(profile: Profile | ColumnarProfile, cache: IdCache, now_ms: int) -> Rows:
    """All rows one profile contributes (see `build_group`)."""
    return build_group([profile], cache, now_ms)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while a group is built: it allocates no cycles, and its tens of
    thousands of tuples would otherwise start full collections over every memoized object (and the
    caller's decoded profiles). Afterwards the group's survivors join the oldest generation unscanned (a
    freeze and unfreeze), unless something else keeps objects frozen."""
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


def build_group(profiles: Sequence[Profile | ColumnarProfile], cache: IdCache, now_ms: int) -> Rows:
    """All rows several profiles (objects or columns, fleetprof.profile.columns) contribute, built in one
    pass (per-call costs paid once per group): samples counted per (sample, second); stacks, frames and
    executables only when not yet stored this week, each distinct stack hashed once."""
    with _collector_paused():
        return _build_group([as_columns(p) for p in profiles], cache, now_ms)


def _build_group(profiles: list[ColumnarProfile], cache: IdCache, now_ms: int) -> Rows:
    """`build_group` over columns, with the collector paused."""
    batch_of = np.repeat(np.arange(len(profiles), dtype=np.int64), [len(p) for p in profiles])
    default_s = np.asarray([p.start_time_ns // 1_000_000_000 for p in profiles], np.int64)[batch_of]
    group = concat(profiles, profiles[0]) if profiles else ColumnarProfile(0, 0, 0)
    owner, secs, counts = _second_rows(group.count, group.stamp_bounds, group.stamps, default_s)
    last_s = int(secs.max()) if len(secs) else now_ms // 1000
    day = last_s // 86_400
    week = day // 7
    ids = _stack_ids(group.stacks, cache)
    sids = ids.sids
    stack_week = cache.stacks_written.get
    weeks = np.fromiter(map(stack_week, sids, itertools.repeat(-1)), np.int64, len(sids))
    new = np.flatnonzero(weeks != week).tolist()
    frame_rows = _new_frames([ids.keys[i] for i in new], [ids.objects[i] for i in new], cache, week)
    exe_rows: dict[str, tuple[str, str]] = {}
    for frame in frame_rows.values():
        mapping = frame.mapping
        if (
            mapping is not None
            and mapping.file_id not in exe_rows
            and (mapping.file_id, mapping.build_id, mapping.path, week) not in cache.executables
        ):
            exe_rows[mapping.file_id] = (mapping.build_id, mapping.path)
    of_stack = np.asarray(sids, np.uint64)[ids.of_sample] if sids else np.zeros(0, np.uint64)
    sample_sids = of_stack[group.stack]
    per_batch = np.bincount(batch_of[owner], weights=counts, minlength=len(profiles)).astype(np.int64)
    pending_exe = {(f, b, p, week) for f, (b, p) in exe_rows.items()}
    cache.trim()
    resources = [resource_of(p) for p in profiles]
    return Rows(
        samples=_samples_table(group, profiles, resources, batch_of, owner, secs, counts, sample_sids),
        stacks=_stacks_table([sids[i] for i in new], [ids.keys[i] for i in new], day),
        frames=_frames_table(frame_rows, day),
        executables=pa.table(
            {
                "file_id": pa.array(list(exe_rows), pa.string()),
                "build_id": pa.array([v[0] for v in exe_rows.values()], pa.string()),
                "path": pa.array([v[1] for v in exe_rows.values()], pa.string()),
            }
        ),
        host=_host_table(resources, profiles, now_ms, per_batch.tolist()),
        sample_count=int(counts.sum()),
        week=week,
        pending_stacks=[sids[i] for i in new],
        pending_frames=list(frame_rows),
        sample_counts=per_batch.tolist(),
        pending_executables=pending_exe,
    )


def _samples_table(
    group: ColumnarProfile,
    profiles: list[ColumnarProfile],
    resources: list[dict[str, str | int]],
    batch_of: np.ndarray,
    owner: np.ndarray,
    secs: np.ndarray,
    counts: np.ndarray,
    sids: np.ndarray,
) -> pa.Table:
    """The samples rows as Arrow columns: labels taken per row from their sample's label set (and its
    profile), strings dictionary-encoded (like LowCardinality), seconds as the `ts` column."""
    row_batch = batch_of[owner]
    row_labels = group.label[owner]
    label_sets = group.labels

    def per_batch(values: list[str]) -> pa.DictionaryArray:
        return _dict_column(values, row_batch)

    def labels(name: str) -> pa.DictionaryArray:
        return _dict_column(list(map(operator.attrgetter(name), label_sets)), row_labels)

    pids = np.fromiter(map(operator.attrgetter("pid"), label_sets), np.int64, len(label_sets))
    tids = np.fromiter(map(operator.attrgetter("tid"), label_sets), np.int64, len(label_sets))
    freqs = np.asarray([max(int(p.frequency_hz), 1) for p in profiles], np.uint32)
    return pa.table(
        {
            "ts": pa.array(secs, pa.int64()).cast(pa.timestamp("s", tz="UTC")),
            "host": per_batch([str(r.get("host.name", "")) for r in resources]),
            "host_id": per_batch([str(r.get("host.id", "")) for r in resources]),
            "process": labels("process_name"),
            "pid": pa.array((pids[row_labels] & 0xFFFFFFFF).astype(np.uint32)),
            "tid": pa.array((tids[row_labels] & 0xFFFFFFFF).astype(np.uint32)),
            "thread": labels("thread_name"),
            "container": labels("container_id"),
            "pod_uid": labels("pod_uid"),
            "executable": labels("executable"),
            "stack_id": pa.array(sids[owner]),
            "count": pa.array(counts.astype(np.uint32)),
            "frequency": pa.array(freqs[row_batch]),
            "labels": _custom_labels(label_sets, row_labels),
        }
    )


_LABELS_ARROW = pa.map_(pa.string(), pa.string())


def _custom_labels(label_sets: list, rows: np.ndarray) -> pa.Array:
    """The `labels` map column: each row's program labels (Go pprof labels), from its label set."""
    per_set = [list(ls.custom_labels) for ls in label_sets]
    if not any(per_set):  # the usual case: empty maps from offsets alone
        empty = pa.array([], pa.string())
        return pa.MapArray.from_arrays(pa.array(np.zeros(len(rows) + 1, np.int32)), empty, empty)
    return pa.array(per_set, _LABELS_ARROW).take(pa.array(rows))


def _stacks_table(sids: list[int], keys: list[bytes], day: int) -> pa.Table:
    """Stacks rows: ids `sids` with frame ids `keys` (root first, little-endian u64 bytes), dated `day`."""
    offsets = np.zeros(len(keys) + 1, np.int32)
    np.cumsum(np.fromiter(map(len, keys), np.int32, len(keys)) // 8, out=offsets[1:])
    values = np.frombuffer(b"".join(keys), "<u8").astype(np.uint64)
    return pa.table(
        {
            "stack_id": pa.array(sids, pa.uint64()),
            "frame_ids": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.uint64())),
            "day": pa.array(np.full(len(sids), day, np.int32), pa.int32()).cast(pa.date32()),
        }
    )


def _frames_table(frames: dict[int, Frame], day: int) -> pa.Table:
    """One frames row per frame not written this week, dated `day`."""
    items = list(frames.items())
    day_col = [day] * len(items)
    return pa.table(
        {
            "frame_id": pa.array([fid for fid, _ in items], pa.uint64()),
            "kind": pa.array([int(f.kind) for _, f in items], pa.uint8()),
            "function": pa.array([f.function for _, f in items], pa.string()),
            "file": pa.array([f.file for _, f in items], pa.string()),
            "line": pa.array([max(f.line, 0) for _, f in items], pa.uint32()),
            "start_line": pa.array([max(f.start_line, 0) for _, f in items], pa.uint32()),
            "inlined": pa.array([int(f.inlined) for _, f in items], pa.uint8()),
            "system_name": pa.array([f.system_name for _, f in items], pa.string()),
            "file_id": pa.array([f.mapping.file_id if f.mapping else "" for _, f in items], pa.string()),
            "build_id": pa.array([f.mapping.build_id if f.mapping else "" for _, f in items], pa.string()),
            "module": pa.array([f.mapping.path if f.mapping else "" for _, f in items], pa.string()),
            "address": pa.array([f.address & 0xFFFFFFFFFFFFFFFF for _, f in items], pa.uint64()),
            "runtime": pa.array([getattr(f, "runtime", "") for _, f in items], pa.string()),
            "day": pa.array(day_col, pa.date32()),
        }
    )


def _host_table(
    resources: list[dict[str, str | int]], profiles: list[ColumnarProfile], now_ms: int, samples: list[int]
) -> pa.Table:
    """One hosts row per profile: the host's identity at this report and how many samples it brought."""

    def get(key: str) -> list[str]:
        return [str(r.get(key, "") or "") for r in resources]

    cores = [r.get("host.cpu.count", 0) for r in resources]
    return pa.table(
        {
            "host_id": pa.array(get("host.id"), pa.string()),
            "host_name": pa.array(get("host.name"), pa.string()),
            "agent_version": pa.array(get("fleetprof.agent.version"), pa.string()),
            "kernel": pa.array(
                [v or p.kernel_release for v, p in zip(get("os.version"), profiles, strict=True)], pa.string()
            ),
            "os": pa.array(
                [d or t for d, t in zip(get("os.description"), get("os.type"), strict=True)], pa.string()
            ),
            "arch": pa.array(get("host.arch"), pa.string()),
            "cpu_model": pa.array(get("host.cpu.model.name"), pa.string()),
            "cores": pa.array([int(c) if str(c).isdigit() else 0 for c in cores], pa.uint32()),
            "report_time": pa.array([now_ms] * len(profiles), pa.timestamp("ms", tz="UTC")),
            "samples": pa.array(samples, pa.uint64()),
        }
    )
