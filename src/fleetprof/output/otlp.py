"""OTLP profiles (v1development): the Profile → ExportProfilesServiceRequest conversion and a file writer.

`to_otlp_request` is the one conversion the agent's reporter uses, for raw and symbolized profiles alike;
`fleetprof.wire.otlp_decode.from_otlp_request` is its inverse. Layout (as the OpenTelemetry eBPF profiler
lays it out): one ResourceProfiles per process, one Profile each, and one shared ProfilesDictionary whose
tables all start with their zero value.
- Resource: the host's attributes (`Profile.resource`, plus `host.name` and `os.version` from the profile's
  host name and kernel release), `process.pid`, `process.title` (the 15-character comm),
  `process.executable.path` and `.name` (the real executable, when known), `container.id`, `k8s.pod.uid`.
  The PROCESS root frame becomes this resource and is not a location.
- Profile: its own start time and duration, period `cpu/nanoseconds`; the first one carries the profile's
  counters as `fleetprof.stats.<name>` attributes. A profile without samples but with counters or a
  resource still sends one host-only resource, so an idle window reaches the collector.
- Sample: `thread.id`, `thread.name`, `cpu.logical_number` (when all its samples ran on one CPU), and a
  timestamp per sample (a count in `values` when timestamps are incomplete).
- Location: `profile.frame.type` (native, kernel, cpython, or the frame's own runtime); native frames carry
  the ELF virtual address inside a mapping with the runtime range and `fleetprof.file_id`,
  `process.executable.build_id.gnu` and, for content-hashed file ids, `process.executable.build_id.htlhash`
  (the same hash the eBPF profiler computes). A raw native frame has no Line: it is symbolized later by
  (file id, address). Kernel frames share a `[kernel.kallsyms]` pseudo mapping; Python frames have none;
  error frames have neither a mapping nor a frame type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import BinaryIO, TypeAlias

from opentelemetry.proto.collector.profiles.v1development.profiles_service_pb2 import (
    ExportProfilesServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.profiles.v1development import profiles_pb2 as otlp

from fleetprof import __version__
from fleetprof.output.frames import KERNEL, KERNEL_MAPPING_NAME, LocationTables, MappingKey
from fleetprof.output.interning import Interner, StringTable, utf8_safe
from fleetprof.profile.model import FrameKind, Mapping, Profile, Sample

SAMPLE_TYPE = ("samples", "count")
PERIOD_TYPE = ("cpu", "nanoseconds")
ATTR_BUILD_ID = "process.executable.build_id.gnu"
ATTR_HTLHASH = "process.executable.build_id.htlhash"  # the eBPF profiler's content hash of the file
ATTR_FILE_ID = "fleetprof.file_id"  # our file id: build id prefix, or the htlhash when there is none
ATTR_FRAME_TYPE = "profile.frame.type"
ATTR_THREAD_ID = "thread.id"
ATTR_THREAD_NAME = "thread.name"
ATTR_CPU = "cpu.logical_number"
ATTR_PID = "process.pid"
ATTR_COMM = "process.title"
ATTR_EXE_PATH = "process.executable.path"
ATTR_EXE_NAME = "process.executable.name"
ATTR_CONTAINER = "container.id"
ATTR_POD_UID = "k8s.pod.uid"
ATTR_HOST_NAME = "host.name"
ATTR_OS_VERSION = "os.version"
STATS_PREFIX = "fleetprof.stats."
FRAME_TYPES = {FrameKind.NATIVE: "native", FrameKind.KERNEL: "kernel", FrameKind.PYTHON: "cpython"}

_Scalar: TypeAlias = str | int
_AttributeKey: TypeAlias = tuple[str, _Scalar]
_ProcessKey: TypeAlias = tuple[int, str, str, str, str]  # pid, comm, executable, container id, pod uid
_SampleKey: TypeAlias = tuple[int, tuple[int, ...]]


def _any_value(value: _Scalar) -> AnyValue:
    """An AnyValue holding a string or an integer."""
    if isinstance(value, int):
        return AnyValue(int_value=value)
    return AnyValue(string_value=utf8_safe(value))


@dataclass(slots=True)
class _Aggregate:
    """Samples of one identity (stack, attributes): their count and, when complete, their timestamps."""

    count: int = 0
    timestamps: list[int] = field(default_factory=list)
    timed: bool = True  # every sample merged so far came with one timestamp per count

    def add(self, sample: Sample) -> None:
        """Merge one model Sample."""
        self.count += sample.count
        self.timed &= len(sample.timestamps_ns) == sample.count
        self.timestamps.extend(sample.timestamps_ns)


class _Dictionary:
    """The shared ProfilesDictionary under construction; index 0 of every table is its zero value."""

    def __init__(self) -> None:
        self.strings = StringTable()
        self.tables = LocationTables()
        self.attributes: Interner[_AttributeKey | None] = Interner(None)
        self.stacks: Interner[tuple[int, ...]] = Interner(())

    def attribute(self, key: str, value: _Scalar) -> int:
        """Index of the attribute `key=value`."""
        return self.attributes.add((key, value))

    def attribute_set(self, pairs: Iterable[tuple[str, _Scalar]]) -> tuple[int, ...]:
        """Sorted attribute indexes of `pairs`: a canonical form for sample identity."""
        return tuple(sorted(self.attribute(key, value) for key, value in pairs))

    def mapping_message(self, key: MappingKey) -> otlp.Mapping:
        """The Mapping table entry for one key."""
        if isinstance(key, Mapping):
            attributes = [self.attribute(ATTR_FILE_ID, key.file_id)] if key.file_id else []
            if key.build_id:
                attributes.append(self.attribute(ATTR_BUILD_ID, key.build_id))
            elif key.file_id:  # no build id: the file id is the content hash
                attributes.append(self.attribute(ATTR_HTLHASH, key.file_id))
            return otlp.Mapping(
                memory_start=key.start,
                memory_limit=key.limit,
                file_offset=key.offset,
                filename_strindex=self.strings.add(key.path),
                attribute_indices=attributes,
            )
        facts = self.tables.facts[KERNEL]
        return otlp.Mapping(
            memory_start=facts.low,
            memory_limit=facts.high,
            filename_strindex=self.strings.add(KERNEL_MAPPING_NAME),
        )

    def message(self) -> otlp.ProfilesDictionary:
        """Emit every table; the string and attribute tables last, as the others add to them."""
        tables = self.tables
        out = otlp.ProfilesDictionary()
        out.link_table.add()
        out.mapping_table.add()
        out.mapping_table.extend(self.mapping_message(key) for key in tables.mappings.keys)
        out.location_table.add()
        for key in tables.locations.keys:
            frame_type = key.runtime or FRAME_TYPES.get(key.kind)
            location = out.location_table.add(
                mapping_index=tables.mapping_number(key),
                address=key.address,
                attribute_indices=[self.attribute(ATTR_FRAME_TYPE, frame_type)] if frame_type else [],
            )
            for function_index, line in key.lines:
                location.lines.add(function_index=function_index, line=line)
        out.function_table.add()
        for name, system_name, filename, start_line in tables.functions.keys:
            out.function_table.add(
                name_strindex=self.strings.add(name),
                system_name_strindex=self.strings.add(system_name),
                filename_strindex=self.strings.add(filename),
                start_line=start_line,
            )
        out.stack_table.extend(otlp.Stack(location_indices=key) for key in self.stacks.keys)
        for key in self.attributes.keys:
            attribute = out.attribute_table.add()
            if key is not None:
                attribute.key_strindex = self.strings.add(key[0])
                attribute.value.CopyFrom(_any_value(key[1]))
        out.string_table.extend(self.strings.keys)
        return out


LABEL_PREFIX = "label."  # before a program label whose key would read as a semantic-convention attribute
RESERVED_PREFIXES = (
    "process.",
    "thread.",
    "host.",
    "container.",
    "k8s.",
    "os.",
    "cpu.",
    "service.",
    "profile.",
    "telemetry.",
    "fleetprof.",
    LABEL_PREFIX,
)


def label_attribute(key: str) -> str:
    """The sample attribute key of a program label (a Go pprof label): its own key, unless it would read
    as one of OTel's semantic-convention attributes (or ours)."""
    return LABEL_PREFIX + key if key.startswith(RESERVED_PREFIXES) else key


def attribute_label(key: str) -> str | None:
    """The program label a sample attribute key stands for, None for a semantic-convention attribute."""
    if key.startswith(LABEL_PREFIX):
        return key[len(LABEL_PREFIX) :]
    return None if key.startswith(RESERVED_PREFIXES) else key


def _sample_attributes(sample: Sample) -> list[tuple[str, _Scalar]]:
    """thread.id, thread.name, cpu.logical_number when the samples ran on a single CPU, and the program's
    labels (Go pprof labels) under their own keys."""
    pairs: list[tuple[str, _Scalar]] = [(ATTR_THREAD_ID, sample.tid), (ATTR_THREAD_NAME, sample.thread_name)]
    if len(sample.cpus) == 1:
        pairs.append((ATTR_CPU, next(iter(sample.cpus))))
    pairs += [(label_attribute(key), value) for key, value in sample.custom_labels]
    return pairs


def _host_attributes(profile: Profile) -> dict[str, _Scalar]:
    """The host's resource attributes: host name and kernel release, then `profile.resource`."""
    pairs: dict[str, _Scalar] = {}
    if profile.hostname:
        pairs[ATTR_HOST_NAME] = profile.hostname
    if profile.kernel_release:
        pairs[ATTR_OS_VERSION] = profile.kernel_release
    pairs.update(profile.resource)
    return pairs


def _resource_attributes(key: _ProcessKey, host: dict[str, _Scalar]) -> list[KeyValue]:
    """Resource attributes of one process on its host."""
    pid, comm, executable, container_id, pod_uid = key
    pairs: list[tuple[str, _Scalar]] = [(ATTR_PID, pid)]
    if comm:
        pairs.append((ATTR_COMM, comm))
    if executable:
        pairs += [(ATTR_EXE_PATH, executable), (ATTR_EXE_NAME, executable.rsplit("/", 1)[-1])]
    if container_id:
        pairs.append((ATTR_CONTAINER, container_id))
    if pod_uid:
        pairs.append((ATTR_POD_UID, pod_uid))
    own = {name for name, _ in pairs}
    pairs += [(name, value) for name, value in host.items() if name not in own]
    return [KeyValue(key=name, value=_any_value(value)) for name, value in pairs]


def _profile_message(
    profile: Profile, aggregates: dict[_SampleKey, _Aggregate], dictionary: _Dictionary, stats: bool
) -> otlp.Profile:
    """One process's Profile: header fields plus its samples (timestamps only when complete)."""
    strings = dictionary.strings
    out = otlp.Profile(
        time_unix_nano=profile.start_time_ns,
        duration_nano=profile.duration_ns,
        period=profile.period_ns,
    )
    out.sample_type.type_strindex = strings.add(SAMPLE_TYPE[0])
    out.sample_type.unit_strindex = strings.add(SAMPLE_TYPE[1])
    out.period_type.type_strindex = strings.add(PERIOD_TYPE[0])
    out.period_type.unit_strindex = strings.add(PERIOD_TYPE[1])
    if stats:
        out.attribute_indices.extend(
            dictionary.attribute(STATS_PREFIX + name, int(value))
            for name, value in sorted(profile.stats.items())
        )
    for (stack_index, attributes), aggregate in aggregates.items():
        sample = out.samples.add(stack_index=stack_index, attribute_indices=attributes)
        if aggregate.timed:
            sample.timestamps_unix_nano.extend(sorted(aggregate.timestamps))
        else:
            sample.values.append(aggregate.count)
    return out


def to_otlp_request(profile: Profile) -> ExportProfilesServiceRequest:
    """Convert a raw or symbolized Profile into one OTLP ExportProfilesServiceRequest (resource per
    process); `fleetprof.wire.otlp_decode.from_otlp_request` reads it back."""
    dictionary = _Dictionary()
    processes: dict[_ProcessKey, dict[_SampleKey, _Aggregate]] = {}
    for sample in profile.samples:
        if sample.count <= 0:
            continue
        process = (sample.pid, sample.process_name, sample.executable, sample.container_id, sample.pod_uid)
        stack = dictionary.stacks.add(dictionary.tables.stack(sample.stack))
        key = (stack, dictionary.attribute_set(_sample_attributes(sample)))
        processes.setdefault(process, {}).setdefault(key, _Aggregate()).add(sample)
    request = ExportProfilesServiceRequest()
    scope = InstrumentationScope(name="fleetprof", version=__version__)
    host = _host_attributes(profile)
    if not processes and (profile.stats or profile.resource):
        resource_profiles = request.resource_profiles.add()
        resource_profiles.resource.attributes.extend(
            KeyValue(key=k, value=_any_value(v)) for k, v in host.items()
        )
        scope_profiles = resource_profiles.scope_profiles.add(scope=scope)
        scope_profiles.profiles.append(_profile_message(profile, {}, dictionary, True))
    for number, process in enumerate(sorted(processes)):
        resource_profiles = request.resource_profiles.add()
        resource_profiles.resource.attributes.extend(_resource_attributes(process, host))
        scope_profiles = resource_profiles.scope_profiles.add(scope=scope)
        scope_profiles.profiles.append(_profile_message(profile, processes[process], dictionary, number == 0))
    request.dictionary.CopyFrom(dictionary.message())
    return request


class OtlpFormat:
    """An OTLP ExportProfilesServiceRequest in protobuf binary, the body the agent POSTs to a collector."""

    name = "otlp"
    suffix = ".otlp"
    binary = True

    def write(self, profile: Profile, stream: BinaryIO) -> None:
        """Write the serialized request (not gzipped)."""
        stream.write(to_otlp_request(profile).SerializeToString())
