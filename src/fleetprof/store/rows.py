"""Turn a `Profile` into the rows of the store's tables: frames and stacks by hash, samples by time.

Frame and stack ids are 64-bit BLAKE2b hashes of their content, so every host, process and batch that sees
the same frame or stack writes the same id. A raw native frame (function "") is identified by its file id
and address alone: symbols for it live in the `symbols` table and apply to every sample that ever used it.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from fleetprof.profile.model import Frame, FrameKind, Profile, Sample

_MS = 1_000_000


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


def stack_id(frame_ids: Iterable[int]) -> int:
    """Content hash of a stack: its frame ids, root first."""
    ids = list(frame_ids)
    packed = struct.pack(f"<{len(ids)}Q", *ids)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little")


def resource_of(profile: Profile) -> dict[str, str | int]:
    """The profile's OTel resource attributes, with the host name filled in from older fields."""
    resource = dict(getattr(profile, "resource", None) or {})
    resource.setdefault("host.name", profile.hostname)
    resource.setdefault("host.id", resource.get("host.name", ""))
    if profile.kernel_release:
        resource.setdefault("os.version", profile.kernel_release)
    return resource


@dataclass
class IdCache:
    """Ids already computed and (frame, stack, file) rows already written per day; bounded."""

    limit: int = 500_000
    frame_ids: dict[Frame, int] = field(default_factory=dict)
    stack_ids: dict[tuple[Frame, ...], tuple[int, list[int]]] = field(default_factory=dict)
    written: set[tuple[str, int, int]] = field(default_factory=set)  # (table, id, week)

    def trim(self) -> None:
        """Forget everything when a cache outgrows its bound (ids are recomputed, rows rewritten)."""
        if len(self.frame_ids) > self.limit:
            self.frame_ids.clear()
        if len(self.stack_ids) > self.limit:
            self.stack_ids.clear()
        if len(self.written) > 4 * self.limit:
            self.written.clear()

    def frame(self, frame: Frame) -> int:
        """Cached `frame_id`."""
        fid = self.frame_ids.get(frame)
        if fid is None:
            fid = self.frame_ids[frame] = frame_id(frame)
        return fid

    def stack(self, stack: tuple[Frame, ...]) -> tuple[int, list[int]]:
        """Cached (stack id, frame ids)."""
        hit = self.stack_ids.get(stack)
        if hit is None:
            fids = [self.frame(f) for f in stack]
            hit = self.stack_ids[stack] = (stack_id(fids), fids)
        return hit


@dataclass
class Rows:
    """Arrow tables for one batch; `samples` is inserted last as the batch's commit point."""

    samples: pa.Table
    stacks: pa.Table
    frames: pa.Table
    executables: pa.Table
    host: pa.Table
    sample_count: int
    pending: set[tuple[str, int, int]]  # marks for IdCache.written once the batch is committed


def _expand(sample: Sample, default_ms: int) -> tuple[list[int], list[int]]:
    """(timestamps in ms, counts): one row per timestamp, leftover count on the last row (ms ascending)."""
    stamps = sample.timestamps_ns
    if not stamps:
        return [default_ms], [max(sample.count, 1)]
    ms = [t // _MS for t in stamps]
    counts = [1] * len(ms)
    extra = sample.count - len(ms)
    if extra > 0:
        counts[-1] += extra
    return ms, counts


def build_rows(profile: Profile, cache: IdCache, now_ms: int) -> Rows:
    """All rows a profile contributes; frames/stacks/executables only when not yet written that day."""
    resource = resource_of(profile)
    host = str(resource.get("host.name", ""))
    host_id = str(resource.get("host.id", ""))
    default_ms = profile.start_time_ns // _MS
    frequency = max(int(profile.frequency_hz), 1)
    cols: dict[str, list] = {
        k: []
        for k in (
            "ts", "process", "pid", "tid", "thread", "container", "pod_uid", "executable", "stack_id", "count"
        )
    }  # fmt: skip
    stack_rows: dict[int, list[int]] = {}
    frame_rows: dict[int, Frame] = {}
    exe_rows: dict[str, tuple[str, str]] = {}
    days: set[int] = set()
    written = cache.written
    for sample in profile.samples:
        ms, counts = _expand(sample, default_ms)
        n = len(ms)
        sid, fids = cache.stack(sample.stack)
        cols["ts"] += ms
        cols["count"] += counts
        cols["stack_id"] += [sid] * n
        cols["process"] += [sample.process_name] * n
        cols["pid"] += [sample.pid] * n
        cols["tid"] += [sample.tid] * n
        cols["thread"] += [sample.thread_name] * n
        cols["container"] += [sample.container_id] * n
        cols["pod_uid"] += [getattr(sample, "pod_uid", "") or ""] * n
        cols["executable"] += [getattr(sample, "executable", "") or ""] * n
        day = max(ms) // 86_400_000
        days.add(day)
        week = day // 7
        if ("s", sid, week) not in written and sid not in stack_rows:
            stack_rows[sid] = fids
            for frame, fid in zip(sample.stack, fids, strict=True):
                if ("f", fid, week) not in written:
                    frame_rows[fid] = frame
                    if frame.mapping is not None and frame.mapping.file_id not in exe_rows:
                        exe_rows[frame.mapping.file_id] = (frame.mapping.build_id, frame.mapping.path)
    total = sum(cols["count"])
    day = max(days) if days else now_ms // 86_400_000
    pending = {("s", sid, day // 7) for sid in stack_rows} | {("f", fid, day // 7) for fid in frame_rows}
    cache.trim()
    return Rows(
        samples=_samples_table(cols, host, host_id, frequency),
        stacks=_stacks_table(stack_rows, day),
        frames=_frames_table(frame_rows, day),
        executables=pa.table(
            {
                "file_id": pa.array(list(exe_rows), pa.string()),
                "build_id": pa.array([v[0] for v in exe_rows.values()], pa.string()),
                "path": pa.array([v[1] for v in exe_rows.values()], pa.string()),
            }
        ),
        host=_host_table(resource, profile, now_ms, total),
        sample_count=total,
        pending=pending,
    )


def _samples_table(cols: dict[str, list], host: str, host_id: str, frequency: int) -> pa.Table:
    """The samples rows as Arrow columns (strings dictionary-encoded, like LowCardinality)."""
    n = len(cols["ts"])

    def lc(values: list[str]) -> pa.Array:
        return pa.array(values, pa.string()).dictionary_encode()

    return pa.table(
        {
            "ts": pa.array(cols["ts"], pa.timestamp("ms", tz="UTC")),
            "host": lc([host] * n),
            "host_id": lc([host_id] * n),
            "process": lc(cols["process"]),
            "pid": pa.array(cols["pid"], pa.uint32()),
            "tid": pa.array(cols["tid"], pa.uint32()),
            "thread": lc(cols["thread"]),
            "container": lc(cols["container"]),
            "pod_uid": lc(cols["pod_uid"]),
            "executable": lc(cols["executable"]),
            "stack_id": pa.array(cols["stack_id"], pa.uint64()),
            "count": pa.array(cols["count"], pa.uint32()),
            "frequency": pa.array([frequency] * n, pa.uint32()),
        }
    )


def _stacks_table(stacks: dict[int, list[int]], day: int) -> pa.Table:
    """One stacks row per stack not written this week, dated `day`."""
    return pa.table(
        {
            "stack_id": pa.array(list(stacks), pa.uint64()),
            "frame_ids": pa.array(list(stacks.values()), pa.list_(pa.uint64())),
            "day": pa.array([day] * len(stacks), pa.date32()),
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


def _host_table(resource: dict[str, str | int], profile: Profile, now_ms: int, samples: int) -> pa.Table:
    """One hosts row: the host's identity at this report and how many samples it brought."""

    def get(key: str) -> str:
        return str(resource.get(key, "") or "")

    cores = resource.get("host.cpu.count", 0)
    return pa.table(
        {
            "host_id": [get("host.id")],
            "host_name": [get("host.name")],
            "agent_version": [get("fleetprof.agent.version")],
            "kernel": [get("os.version") or profile.kernel_release],
            "os": [get("os.description") or get("os.type")],
            "arch": [get("host.arch")],
            "cpu_model": [get("host.cpu.model.name")],
            "cores": pa.array([int(cores) if str(cores).isdigit() else 0], pa.uint32()),
            "report_time": pa.array([now_ms], pa.timestamp("ms", tz="UTC")),
            "samples": pa.array([samples], pa.uint64()),
        }
    )
