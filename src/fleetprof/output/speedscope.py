"""speedscope JSON (https://www.speedscope.app/file-format-schema.json): one sampled profile per process.

speedscope shows one profile at a time, so each process gets its own, named `process (pid)`, hottest
first (the one opened by default). The PROCESS root frame is dropped (the profile name says it); samples
are in time order when every sample has its timestamp, each weighing one period in nanoseconds.
"""

from __future__ import annotations

import json
from typing import Any, BinaryIO, TypeAlias

from fleetprof import __version__
from fleetprof.output.frames import call_frames
from fleetprof.output.interning import Interner
from fleetprof.profile.model import Frame, FrameKind, Profile, Sample

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"

_FrameKey: TypeAlias = tuple[str, str, int]
_Event: TypeAlias = tuple[int, tuple[int, ...], int]  # time, frame indexes (root first), weight


def _frame_key(frame: Frame) -> _FrameKey:
    """(name, file, line) of a speedscope frame; Python frames keep file and line in their own fields."""
    if frame.kind is FrameKind.PYTHON:
        return frame.function, frame.file, frame.line
    return frame.folded_name(), frame.file, frame.line


def _frame_json(key: _FrameKey) -> dict[str, Any]:
    """A shared.frames entry; file and line only when known."""
    name, file, line = key
    entry: dict[str, Any] = {"name": name}
    if file:
        entry["file"] = file
    if line > 0:
        entry["line"] = line
    return entry


def _events(sample: Sample, stack: tuple[int, ...], period: int, start: int) -> list[_Event]:
    """One event per timestamp when all are known, else one event weighing every sample."""
    if len(sample.timestamps_ns) == sample.count:
        return [(ts, stack, period) for ts in sample.timestamps_ns]
    first = min(sample.timestamps_ns, default=start)
    return [(first, stack, sample.count * period)]


def _profile_json(name: str, events: list[_Event]) -> dict[str, Any]:
    """A sampled profile from time-sorted events, merging neighbours with equal stacks."""
    samples: list[list[int]] = []
    weights: list[int] = []
    previous: tuple[int, ...] | None = None
    for _, stack, weight in sorted(events, key=lambda event: event[0]):
        if stack == previous:
            weights[-1] += weight
        else:
            samples.append(list(stack))
            weights.append(weight)
            previous = stack
    return {
        "type": "sampled",
        "name": name,
        "unit": "nanoseconds",
        "startValue": 0,
        "endValue": sum(weights),
        "samples": samples,
        "weights": weights,
    }


def to_speedscope(profile: Profile) -> dict[str, Any]:
    """Convert a Profile to a speedscope file (a JSON-ready dict)."""
    frames: Interner[_FrameKey] = Interner()
    processes: dict[tuple[int, str], list[_Event]] = {}
    totals: dict[tuple[int, str], int] = {}
    for sample in profile.samples:
        if sample.count <= 0:
            continue
        stack = tuple(frames.add(_frame_key(frame)) for frame in call_frames(sample.stack))
        process = (sample.pid, sample.process_name)
        events = processes.setdefault(process, [])
        events.extend(_events(sample, stack, profile.period_ns, profile.start_time_ns))
        totals[process] = totals.get(process, 0) + sample.count
    order = sorted(processes, key=lambda process: (-totals[process], process))
    title = f"fleetprof {profile.hostname}".strip()
    return {
        "$schema": SCHEMA_URL,
        "name": title,
        "exporter": f"fleetprof {__version__}",
        "activeProfileIndex": 0,
        "shared": {"frames": [_frame_json(key) for key in frames.keys]},
        "profiles": [_profile_json(f"{name} ({pid})", processes[(pid, name)]) for pid, name in order],
    }


class SpeedscopeFormat:
    """speedscope's own JSON format, opened by https://www.speedscope.app or the `speedscope` CLI."""

    name = "speedscope"
    suffix = ".speedscope.json"
    binary = False

    def write(self, profile: Profile, stream: BinaryIO) -> None:
        """Write compact UTF-8 JSON."""
        text = json.dumps(to_speedscope(profile), ensure_ascii=False, separators=(",", ":"))
        stream.write(text.encode(errors="replace"))
