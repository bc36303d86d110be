"""A profile as columns: what the store takes from a decoded request without one Python object per sample.

`ColumnarProfile` carries the same window, host and counters as `Profile`, and its samples as numpy arrays
that index two small lists: the stacks (canonical tuples of frames, root first, the PROCESS frame included)
and the label sets (pid, thread, process names, ...) the samples use. `to_profile` gives the equal
`Profile`; `from_profile` the columns of any `Profile`.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fleetprof.profile.model import Frame, Profile, Sample

Stack = tuple[Frame, ...]


@dataclass(frozen=True, slots=True)
class Labels:
    """What a sample says besides its stack, count and timestamps: one object per distinct set."""

    pid: int
    tid: int
    process_name: str
    thread_name: str
    cpus: frozenset[int] = frozenset()
    container_id: str = ""
    executable: str = ""
    pod_uid: str = ""
    custom_labels: tuple[tuple[str, str], ...] = ()  # the program's own (Go pprof labels)


_EMPTY = np.zeros(0, np.int64)


@dataclass(slots=True, eq=False)
class ColumnarProfile:
    """A `Profile` whose samples are columns: sample i has stack `stacks[stack[i]]`, labels
    `labels[label[i]]`, count `count[i]` and timestamps `stamps[stamp_bounds[i]:stamp_bounds[i + 1]]`."""

    frequency_hz: int
    start_time_ns: int
    duration_ns: int
    hostname: str = ""
    kernel_release: str = ""
    stats: dict[str, int] = field(default_factory=dict)
    resource: dict[str, str | int] = field(default_factory=dict)
    stacks: list[Stack] = field(default_factory=list)
    labels: list[Labels] = field(default_factory=list)
    stack: np.ndarray = field(default_factory=lambda: _EMPTY)
    label: np.ndarray = field(default_factory=lambda: _EMPTY)
    count: np.ndarray = field(default_factory=lambda: _EMPTY)
    stamp_bounds: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    stamps: np.ndarray = field(default_factory=lambda: _EMPTY)

    def __len__(self) -> int:
        """Samples (rows of the columns)."""
        return len(self.count)

    @property
    def total(self) -> int:
        """Sum of sample counts."""
        return int(self.count.sum())

    def to_profile(self) -> Profile:
        """The equal `Profile` (one `Sample` object per row)."""
        bounds = self.stamp_bounds.tolist()
        stamps = self.stamps.tolist()
        samples = []
        for i, (s, lab, n) in enumerate(
            zip(self.stack.tolist(), self.label.tolist(), self.count.tolist(), strict=True)
        ):
            labels = self.labels[lab]
            samples.append(
                Sample(
                    stack=self.stacks[s],
                    pid=labels.pid,
                    tid=labels.tid,
                    process_name=labels.process_name,
                    thread_name=labels.thread_name,
                    count=n,
                    cpus=set(labels.cpus),
                    timestamps_ns=stamps[bounds[i] : bounds[i + 1]],
                    container_id=labels.container_id,
                    executable=labels.executable,
                    pod_uid=labels.pod_uid,
                    custom_labels=labels.custom_labels,
                )
            )
        return Profile(
            samples=samples,
            frequency_hz=self.frequency_hz,
            start_time_ns=self.start_time_ns,
            duration_ns=self.duration_ns,
            hostname=self.hostname,
            kernel_release=self.kernel_release,
            stats=self.stats,
            resource=self.resource,
        )

    @classmethod
    def from_profile(cls, profile: Profile) -> ColumnarProfile:
        """The columns of `profile` (its stacks one per sample; label sets shared)."""
        samples = profile.samples
        n = len(samples)
        keys = zip(
            map(operator.attrgetter("pid"), samples),
            map(operator.attrgetter("tid"), samples),
            map(operator.attrgetter("process_name"), samples),
            map(operator.attrgetter("thread_name"), samples),
            map(frozenset, map(operator.attrgetter("cpus"), samples)),
            map(operator.attrgetter("container_id"), samples),
            map(operator.attrgetter("executable"), samples),
            map(operator.attrgetter("pod_uid"), samples),
            map(operator.attrgetter("custom_labels"), samples),
            strict=True,
        )
        index: dict[tuple[object, ...], int] = {}
        label = np.fromiter((index.setdefault(k, len(index)) for k in keys), np.int64, n)
        stamp_lists = list(map(operator.attrgetter("timestamps_ns"), samples))
        lens = np.fromiter(map(len, stamp_lists), np.int64, n)
        bounds = np.zeros(n + 1, np.int64)
        np.cumsum(lens, out=bounds[1:])
        return cls(
            frequency_hz=profile.frequency_hz,
            start_time_ns=profile.start_time_ns,
            duration_ns=profile.duration_ns,
            hostname=profile.hostname,
            kernel_release=profile.kernel_release,
            stats=profile.stats,
            resource=profile.resource,
            stacks=list(map(operator.attrgetter("stack"), samples)),
            labels=[Labels(*k) for k in index],  # type: ignore[arg-type]
            stack=np.arange(n, dtype=np.int64),
            label=label,
            count=np.fromiter(map(operator.attrgetter("count"), samples), np.int64, n),
            stamp_bounds=bounds,
            stamps=np.fromiter(itertools.chain.from_iterable(stamp_lists), np.int64, int(bounds[-1])),
        )


def as_columns(profile: Profile | ColumnarProfile) -> ColumnarProfile:
    """`profile` as columns (itself when it already is)."""
    return profile if isinstance(profile, ColumnarProfile) else ColumnarProfile.from_profile(profile)


def concat(parts: Sequence[ColumnarProfile], like: ColumnarProfile) -> ColumnarProfile:
    """The samples of `parts` one after the other, with the window, host and counters of `like`."""
    stacks: list[Stack] = []
    labels: list[Labels] = []
    stack, label, bounds = [], [], [np.zeros(1, np.int64)]
    stamped = 0
    for part in parts:
        stack.append(part.stack + len(stacks))
        label.append(part.label + len(labels))
        bounds.append(part.stamp_bounds[1:] + stamped)
        stamped += int(part.stamp_bounds[-1])
        stacks += part.stacks
        labels += part.labels
    return ColumnarProfile(
        frequency_hz=like.frequency_hz,
        start_time_ns=like.start_time_ns,
        duration_ns=like.duration_ns,
        hostname=like.hostname,
        kernel_release=like.kernel_release,
        stats=like.stats,
        resource=like.resource,
        stacks=stacks,
        labels=labels,
        stack=np.concatenate(stack) if stack else _EMPTY,
        label=np.concatenate(label) if label else _EMPTY,
        count=np.concatenate([p.count for p in parts]) if parts else _EMPTY,
        stamp_bounds=np.concatenate(bounds),
        stamps=np.concatenate([p.stamps for p in parts]) if parts else _EMPTY,
    )
