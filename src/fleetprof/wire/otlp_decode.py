"""OTLP profiles (v1development) → `Profile`s: the inverse of fleetprof.output.otlp, and a reader of what
other OpenTelemetry profilers send (the OpenTelemetry eBPF profiler's shape in particular).

One `Profile` per host and sampling frequency: resource attributes that describe the process (`process.*`,
`container.*`, `k8s.pod.*`, `service.*`, …) become sample labels, the others (`host.*`, `os.*`, …) the
profile's `resource`; the OTLP profiles of one host are merged (earliest start, latest end, counters
summed). Process labels may also come as sample attributes (older eBPF profilers put them there).

Frames by `profile.frame.type`: `native` (and `go`, `rust`; untyped ones with a file mapping) locations
with Lines are kept as named native frames (one per Line, outermost first, the inner ones `inlined`, a
nameless one `module+0x…`); without a named Line they are raw frames keyed by the mapping's file id
(`fleetprof.file_id`, else `process.executable.build_id.htlhash`, else derived from the GNU build id) and
the address, to be symbolized later; `kernel` and `cpython` become kernel and Python frames;
`abort-marker`/`unknown`, and untyped locations without a mapping whose name is `[bracketed]`, become
error frames; every other runtime (jvm, v8js, php, ruby, perl, dotnet, beam, …) an INTERPRETED frame named
as sent, with `runtime` set to its frame type. Profiles whose sample type is not a sample count (or CPU
nanoseconds, scaled by the period) are skipped and counted in `otlp_skipped_profiles`.

Malformed input (an index outside its table, a missing dictionary, a negative count, bytes that are not a
request) raises `OtlpDecodeError` with a one-line reason; nothing else escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeAlias

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from fleetprof.output.otlp import (
    ATTR_BUILD_ID,
    ATTR_COMM,
    ATTR_CONTAINER,
    ATTR_CPU,
    ATTR_EXE_NAME,
    ATTR_EXE_PATH,
    ATTR_FILE_ID,
    ATTR_FRAME_TYPE,
    ATTR_HOST_NAME,
    ATTR_HTLHASH,
    ATTR_OS_VERSION,
    ATTR_PID,
    ATTR_POD_UID,
    ATTR_THREAD_ID,
    ATTR_THREAD_NAME,
    STATS_PREFIX,
    attribute_label,
)
from fleetprof.process.fileid import file_id_from_build_id
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample
from fleetprof.wire.intern import SHARED, Interner, mapping_content

Scalar: TypeAlias = str | int
PROCESS_PREFIXES = (
    "process.",
    "container.",
    "k8s.pod.",
    "k8s.container.",
    "k8s.namespace.",
    "k8s.deployment.",
    "k8s.replicaset.",
    "k8s.statefulset.",
    "k8s.daemonset.",
    "k8s.job.",
    "k8s.cronjob.",
    "service.",
    "thread.",
    "cpu.",
)
NATIVE_TYPES = {"native": "", "go": "go", "rust": "rust"}  # frame type -> Frame.runtime of a NATIVE frame
ERROR_TYPES = frozenset({"abort-marker", "unknown"})
COUNT_TYPES = frozenset({("samples", "count"), ("", "")})
CPU_TIME_TYPES = frozenset({("cpu", "nanoseconds")})
STAT_SKIPPED = "otlp_skipped_profiles"


class OtlpDecodeError(ValueError):
    """Malformed OTLP profiles input; the message is a one-line reason."""


class _Request(Protocol):
    """ExportProfilesServiceRequest or ProfilesData: the same two fields."""

    @property
    def resource_profiles(self) -> Sequence[otlp.ResourceProfiles]:
        """Per-resource profiles."""

    @property
    def dictionary(self) -> otlp.ProfilesDictionary:
        """The shared tables."""


def _scalar(value: AnyValue) -> Scalar | None:
    """A string or integer attribute value (booleans as 0/1, doubles and bytes as text); None otherwise."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return int(value.bool_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return None


def _key_values(pairs: Iterable[KeyValue]) -> dict[str, Scalar]:
    """Scalar attributes of a KeyValue list (resource attributes)."""
    out: dict[str, Scalar] = {}
    for pair in pairs:
        value = _scalar(pair.value)
        if value is not None:
            out[pair.key] = value
    return out


def _check(index: int, size: int, what: str) -> int:
    if not 0 <= index < size:
        raise OtlpDecodeError(f"{what} {index} out of range (table has {size} entries)")
    return index


def _int(value: Scalar | None, what: str) -> int:
    if value is None or value == "":
        return 0
    try:
        return int(value)
    except ValueError:
        raise OtlpDecodeError(f"{what} is not an integer: {str(value)[:40]!r}") from None


@dataclass(frozen=True, slots=True)
class _Named:
    """One Line: what a named frame is made of."""

    function: str
    system_name: str
    file: str
    start_line: int
    line: int


class _Dictionary:
    """The request's ProfilesDictionary with bounds-checked, memoized lookups; frames and stacks come out
    as `interner`'s canonical objects (shared with every other request decoded with it)."""

    def __init__(self, d: otlp.ProfilesDictionary, interner: Interner = SHARED) -> None:
        self.d = d
        self.interner = interner
        self.strings = list(d.string_table)
        self._attributes: dict[int, tuple[str, Scalar | None]] = {}
        self._sets: dict[tuple[int, ...], dict[str, Scalar]] = {}
        self._mappings: dict[int, Mapping | None] = {}
        self._by_location: list[tuple[Frame, ...] | None] = [None] * len(d.location_table)
        self._stacks: dict[int, tuple[Frame, ...]] = {}
        self._sample_stacks: dict[tuple[str, int], tuple[Frame, ...]] = {}

    def string(self, index: int, what: str) -> str:
        """String table entry `index`."""
        return self.strings[_check(index, len(self.strings), what)]

    def attribute(self, index: int) -> tuple[str, Scalar | None]:
        """(key, scalar value) of attribute table entry `index`."""
        found = self._attributes.get(index)
        if found is None:
            entry = self.d.attribute_table[_check(index, len(self.d.attribute_table), "attribute index")]
            key = self.string(entry.key_strindex, "attribute key string index")
            found = self._attributes[index] = (key, _scalar(entry.value))
        return found

    def attributes(self, indices: Sequence[int]) -> dict[str, Scalar]:
        """The attributes at `indices` as a dict (the zero attribute and non-scalar values left out)."""
        key = tuple(indices)
        found = self._sets.get(key)
        if found is None:
            found = {}
            for index in key:
                name, value = self.attribute(index)
                if name and value is not None:
                    found[name] = value
            self._sets[key] = found
        return found

    def mapping(self, index: int) -> Mapping | None:
        """The Mapping at `index`; None for the zero mapping."""
        if index in self._mappings:
            return self._mappings[index]
        _check(index, max(len(self.d.mapping_table), 1), "mapping index")
        found: Mapping | None = None
        if index > 0:
            m = self.d.mapping_table[index]
            attributes = self.attributes(m.attribute_indices)
            build_id = str(attributes.get(ATTR_BUILD_ID, "")).lower()
            file_id = str(attributes.get(ATTR_FILE_ID) or attributes.get(ATTR_HTLHASH) or "").lower()
            if not file_id and build_id:
                try:
                    file_id = file_id_from_build_id(build_id)
                except ValueError:
                    file_id = ""
            found = Mapping(
                file_id=file_id,
                path=self.string(m.filename_strindex, "mapping filename string index"),
                build_id=build_id,
                start=m.memory_start,
                limit=m.memory_limit,
                offset=m.file_offset,
            )
        self._mappings[index] = found
        return found

    def named(self, line: otlp.Line) -> _Named:
        """What one Line says."""
        functions = self.d.function_table
        index = _check(line.function_index, max(len(functions), 1), "function index")
        if not functions:
            return _Named("", "", "", 0, line.line)
        f = functions[index]
        return _Named(
            self.string(f.name_strindex, "function name string index"),
            self.string(f.system_name_strindex, "function system name string index"),
            self.string(f.filename_strindex, "function filename string index"),
            f.start_line,
            line.line,
        )

    def stack(self, index: int) -> tuple[Frame, ...]:
        """The frames (root first, no PROCESS frame) of stack table entry `index`."""
        found = self._stacks.get(index)
        if found is None:
            indices = self.d.stack_table[
                _check(index, len(self.d.stack_table), "stack index")
            ].location_indices
            if indices and (min(indices) < 0 or max(indices) >= len(self._by_location)):
                bad = min(indices) if min(indices) < 0 else max(indices)
                _check(bad, len(self._by_location), "location index")
            by_location = self._by_location
            frames: list[Frame] = []
            for location in reversed(indices):
                frames += by_location[location] or self.location(location)
            found = self._stacks[index] = tuple(frames)
        return found

    def location(self, index: int) -> tuple[Frame, ...]:
        """The frames (outermost first) of location table entry `index`."""
        found = self._by_location[_check(index, len(self._by_location), "location index")]
        if found is None:
            loc = self.d.location_table[index]
            frame_type = str(self.attributes(loc.attribute_indices).get(ATTR_FRAME_TYPE, ""))
            mapping = self.mapping(loc.mapping_index)
            named = [self.named(line) for line in reversed(loc.lines)]
            address = loc.address
            key = (
                frame_type,
                mapping_content(mapping),
                address,
                *[(n.function, n.system_name, n.file, n.start_line, n.line) for n in named],
            )
            found = self._by_location[index] = self.interner.location(
                key, lambda: _frames(frame_type, mapping, address, named)
            )
        return found

    def sample_stack(self, process: str, index: int) -> tuple[Frame, ...]:
        """A sample's whole stack: the PROCESS frame `process`, then stack table entry `index`."""
        key = (process, index)
        found = self._sample_stacks.get(key)
        if found is None:
            interner = self.interner
            found = self._sample_stacks[key] = interner.stack((interner.root(process), *self.stack(index)))
        return found


def _chain(
    kind: FrameKind, named: list[_Named], mapping: Mapping | None, address: int, runtime: str
) -> tuple[Frame, ...]:
    """One frame per Line (outermost first; the inner ones inlined)."""
    return tuple(
        Frame(
            kind=kind,
            function=n.function,
            file=n.file,
            line=n.line,
            mapping=mapping,
            address=address,
            inlined=i > 0,
            start_line=n.start_line,
            system_name=n.system_name,
            runtime=runtime,
        )
        for i, n in enumerate(named)
    )


def _frames(frame_type: str, mapping: Mapping | None, address: int, named: list[_Named]) -> tuple[Frame, ...]:
    """The model frames of one location (see the module docstring for the rules)."""
    with_names = [n for n in named if n.function]  # nameless Lines only help native frames (module+0x…)
    has_names = bool(with_names)
    first = with_names[0].function if with_names else ""
    file = named[0].file if named else ""
    if frame_type == "kernel":
        return _chain(
            FrameKind.KERNEL,
            with_names or [_Named(f"[kernel]+0x{address:x}", "", "", 0, 0)],
            None,
            address,
            "",
        )
    if frame_type == "cpython":
        return _chain(FrameKind.PYTHON, with_names or [_Named("<python frame>", "", file, 0, 0)], None, 0, "")
    native = frame_type in NATIVE_TYPES or (not frame_type and mapping is not None and bool(mapping.path))
    if native:
        runtime = NATIVE_TYPES.get(frame_type, "")
        module = mapping.name if mapping is not None and mapping.path else "[unknown]"
        placed = mapping if mapping is not None and (mapping.path or mapping.file_id) else None
        if has_names:
            fallback = f"{module}+0x{address:x}"
            named = [n if n.function else _Named(fallback, "", n.file, n.start_line, n.line) for n in named]
            return _chain(FrameKind.NATIVE, named, placed, address, runtime)
        if placed is not None and placed.file_id:  # raw: symbolized later by (file id, address)
            return (Frame(FrameKind.NATIVE, "", mapping=placed, address=address, runtime=runtime),)
        return (
            Frame(
                FrameKind.NATIVE, f"{module}+0x{address:x}", mapping=placed, address=address, runtime=runtime
            ),
        )
    if frame_type in ERROR_TYPES or (not frame_type and (not has_names or first.startswith("["))):
        return (Frame(FrameKind.ERROR, first or f"[unwind: {frame_type or 'unknown frame'}]"),)
    unnamed = [_Named(f"[{frame_type} frame]", "", file, 0, 0)]
    return _chain(FrameKind.INTERPRETED, with_names or unnamed, None, 0, frame_type)


@dataclass(slots=True)
class _HostProfile:
    """The Profile of one host (and frequency) being assembled."""

    resource: dict[str, Scalar]
    frequency_hz: int
    samples: list[Sample] = field(default_factory=list)
    start: int = 0
    end: int = 0
    stats: dict[str, int] = field(default_factory=dict)

    def span(self, start: int, duration: int) -> None:
        """Widen the time window to cover one OTLP profile."""
        if start:
            self.start = start if not self.start else min(self.start, start)
            self.end = max(self.end, start + duration)

    def profile(self) -> Profile:
        """The finished Profile."""
        return Profile(
            samples=self.samples,
            frequency_hz=self.frequency_hz,
            start_time_ns=self.start,
            duration_ns=max(self.end - self.start, 0),
            hostname=str(self.resource.get(ATTR_HOST_NAME, "")),
            kernel_release=str(self.resource.get(ATTR_OS_VERSION, "")),
            stats=self.stats,
            resource=self.resource,
        )


@dataclass(frozen=True, slots=True)
class _Labels:
    """What a sample's attributes (with its resource's process attributes) say, worked out once per set."""

    pid: int
    tid: int
    process_name: str
    thread_name: str
    cpu: int | None
    container_id: str
    executable: str
    pod_uid: str
    custom_labels: tuple[tuple[str, str], ...] = ()


def custom_labels(own: dict[str, Scalar]) -> tuple[tuple[str, str], ...]:
    """The program's labels among a sample's own attributes (Go pprof labels): every key that is not a
    semantic-convention attribute, sorted."""
    found = ((attribute_label(key), value) for key, value in own.items())
    return tuple(sorted((key, str(value)) for key, value in found if key is not None))


def _labels(labels: dict[str, Scalar], where: str, own: dict[str, Scalar] | None = None) -> _Labels:
    """The sample labels of one attribute set (integers checked in the order pid, tid, cpu); `own`, the
    sample's own attributes, gives the program's labels."""
    pid = _int(labels.get(ATTR_PID), f"{where}: {ATTR_PID}")
    executable = str(labels.get(ATTR_EXE_PATH, ""))
    name = str(labels.get(ATTR_COMM) or labels.get(ATTR_EXE_NAME) or executable.rsplit("/", 1)[-1])
    tid = _int(labels.get(ATTR_THREAD_ID), f"{where}: {ATTR_THREAD_ID}")
    cpu = labels.get(ATTR_CPU)
    return _Labels(
        pid=pid,
        tid=tid,
        process_name=name,
        thread_name=str(labels.get(ATTR_THREAD_NAME, "")),
        cpu=_int(cpu, f"{where}: {ATTR_CPU}") if cpu is not None and cpu != "" else None,
        container_id=str(labels.get(ATTR_CONTAINER, "")),
        executable=executable,
        pod_uid=str(labels.get(ATTR_POD_UID, "")),
        custom_labels=custom_labels(own) if own else (),
    )


def _sample(
    d: _Dictionary,
    s: otlp.Sample,
    process: dict[str, Scalar],
    scale: int,
    where: str,
    memo: dict[tuple[int, ...], _Labels],
) -> Sample | None:
    """One model Sample of an OTLP sample; None when it counts nothing. `memo` holds the labels of the
    attribute sets seen in this resource (samples of one thread share one)."""
    _check(s.link_index, max(len(d.d.link_table), 1), f"{where}: link index")
    d.stack(s.stack_index)  # a bad stack index is the first thing reported
    indices = tuple(s.attribute_indices)
    found = memo.get(indices)
    if found is None:
        d.attributes(indices)  # a bad attribute index comes before a bad value
    timestamps = list(s.timestamps_unix_nano)
    values = list(s.values)
    if values and min(values) < 0:
        raise OtlpDecodeError(f"{where}: negative sample value")
    total = sum(values) // scale if scale > 1 else sum(values)
    count = (
        (total if len(values) == len(timestamps) else max(total, len(timestamps)))
        if values
        else len(timestamps)
    )
    if count <= 0:
        return None
    if found is None:
        labels = d.attributes(indices)
        found = memo[indices] = _labels({**process, **labels} if process else labels, where, labels)
    return Sample(
        stack=d.sample_stack(found.process_name or f"pid {found.pid}", s.stack_index),
        pid=found.pid,
        tid=found.tid,
        process_name=found.process_name,
        thread_name=found.thread_name,
        count=count,
        cpus={found.cpu} if found.cpu is not None else set(),
        timestamps_ns=timestamps if len(timestamps) == count else [],
        container_id=found.container_id,
        executable=found.executable,
        pod_uid=found.pod_uid,
        custom_labels=found.custom_labels,
    )


def profile_kind(d: _Dictionary, prof: otlp.Profile, where: str) -> tuple[tuple[str, str], int]:
    """One profile's sample type (type, unit; empty without a string table) and sampling frequency in Hz
    (from its period in nanoseconds; 0 without one)."""
    sample_type = (
        (
            d.string(prof.sample_type.type_strindex, f"{where}: sample type string index"),
            d.string(prof.sample_type.unit_strindex, f"{where}: sample unit string index"),
        )
        if d.strings
        else ("", "")
    )
    period = max(prof.period, 0)
    return sample_type, round(1_000_000_000 / period) if period else 0


def take_profile(
    target: _HostProfile, d: _Dictionary, prof: otlp.Profile, sample_type: tuple[str, str], where: str
) -> int | None:
    """Account one profile to its host's: its time span and fleetprof stats; the factor its sample values
    are scaled by (CPU nanoseconds per sample), None when its sample type is skipped (counted)."""
    if sample_type not in COUNT_TYPES and sample_type not in CPU_TIME_TYPES:
        target.stats[STAT_SKIPPED] = target.stats.get(STAT_SKIPPED, 0) + 1
        return None
    period = max(prof.period, 0)
    target.span(prof.time_unix_nano, prof.duration_nano)
    for name, value in d.attributes(prof.attribute_indices).items():
        if name.startswith(STATS_PREFIX):
            stat = name.removeprefix(STATS_PREFIX)
            target.stats[stat] = target.stats.get(stat, 0) + _int(value, f"{where}: {name}")
    return period if sample_type in CPU_TIME_TYPES and period > 1 else 1


def from_otlp_request(request: _Request, interner: Interner = SHARED) -> list[Profile]:
    """The Profiles (one per host and frequency) of an ExportProfilesServiceRequest or ProfilesData; equal
    frames and stacks are one object across every request decoded with `interner` (see wire/intern.py)."""
    d = _Dictionary(request.dictionary, interner)
    if not d.strings and any(
        p.samples for rp in request.resource_profiles for sp in rp.scope_profiles for p in sp.profiles
    ):
        raise OtlpDecodeError("missing dictionary: the string table is empty")
    hosts: dict[tuple[object, ...], _HostProfile] = {}
    for r, rp in enumerate(request.resource_profiles):
        attributes = _key_values(rp.resource.attributes)
        process = {k: v for k, v in attributes.items() if k.startswith(PROCESS_PREFIXES)}
        host = {k: v for k, v in attributes.items() if not k.startswith(PROCESS_PREFIXES)}
        host_key = tuple(sorted(host.items(), key=lambda item: item[0]))
        memo: dict[tuple[int, ...], _Labels] = {}
        for sp in rp.scope_profiles:
            for p, prof in enumerate(sp.profiles):
                where = f"resource {r} profile {p}"
                sample_type, frequency = profile_kind(d, prof, where)
                target = hosts.get((*host_key, frequency))
                if target is None:
                    target = hosts[(*host_key, frequency)] = _HostProfile(dict(host), frequency)
                scale = take_profile(target, d, prof, sample_type, where)
                if scale is None:
                    continue
                for i, s in enumerate(prof.samples):
                    sample = _sample(d, s, process, scale, f"{where} sample {i}", memo)
                    if sample is not None:
                        target.samples.append(sample)
    return [host.profile() for host in hosts.values()]


def from_otlp_bytes(data: bytes) -> list[Profile]:
    """Parse a serialized ExportProfilesServiceRequest (not gzipped) and decode it."""
    request = ExportProfilesServiceRequest()
    try:
        request.ParseFromString(data)
    except DecodeError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "truncated or corrupt"
        raise OtlpDecodeError(f"not an OTLP profiles request: {reason}") from None
    return from_otlp_request(request)
