"""OTLP profiles (v1development): the Profile → ExportProfilesServiceRequest conversion and a file writer.

`to_otlp_request` is the one conversion the agent's reporter reuses. Layout: one ResourceProfiles per process
(process.pid, process.executable.name, host.name, container.id), one Profile each, and one shared
ProfilesDictionary whose tables all start with their zero value. The PROCESS root frame becomes the resource;
native locations carry the ELF virtual address (DESIGN: frames travel as file id + file-relative address,
as the OpenTelemetry eBPF profiler sends them) inside a mapping with the runtime range and the build id /
file id attributes; kernel frames share a `[kernel.kallsyms]` pseudo mapping; Python frames have none.
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
from fleetprof.output.frames import KERNEL_MAPPING_NAME, call_frames, physical_frames
from fleetprof.output.interning import Interner, StringTable, utf8_safe
from fleetprof.profile.model import Frame, FrameKind, Mapping, Profile, Sample, Stack

SAMPLE_TYPE = ("samples", "count")
PERIOD_TYPE = ("cpu", "nanoseconds")
ATTR_BUILD_ID = "process.executable.build_id.gnu"
ATTR_FILE_ID = "process.executable.build_id.htlhash"
ATTR_FRAME_TYPE = "profile.frame.type"
ATTR_THREAD_ID = "thread.id"
ATTR_THREAD_NAME = "thread.name"
ATTR_CPU = "cpu.logical_number"
FRAME_TYPES = {FrameKind.NATIVE: "native", FrameKind.KERNEL: "kernel", FrameKind.PYTHON: "cpython"}

_KERNEL = "kernel"  # mapping key of the kernel pseudo mapping
_Scalar: TypeAlias = str | int
_AttributeKey: TypeAlias = tuple[str, _Scalar]
_MappingKey: TypeAlias = Mapping | str
_FunctionKey: TypeAlias = tuple[str, str, str, int]
_LocationKey: TypeAlias = tuple[int, int, tuple[tuple[int, int], ...], tuple[int, ...]]
_ProcessKey: TypeAlias = tuple[int, str, str]
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
        self.attributes: Interner[_AttributeKey | None] = Interner(None)
        self.functions: Interner[_FunctionKey | None] = Interner(None)
        self.locations: Interner[_LocationKey | None] = Interner(None)
        self.mappings: Interner[_MappingKey | None] = Interner(None)
        self.stacks: Interner[tuple[int, ...]] = Interner(())
        self.stack_cache: dict[Stack, int] = {}  # many samples share a stack (other thread, other CPU)
        self.kernel_range = [0, 0]

    def attribute(self, key: str, value: _Scalar) -> int:
        """Index of the attribute `key=value`."""
        return self.attributes.add((key, value))

    def attribute_set(self, pairs: Iterable[tuple[str, _Scalar]]) -> tuple[int, ...]:
        """Sorted attribute indexes of `pairs`: a canonical form for sample identity."""
        return tuple(sorted(self.attribute(key, value) for key, value in pairs))

    def function(self, frame: Frame) -> int:
        """Index of the frame's Function."""
        return self.functions.add((frame.function, frame.system_name, frame.file, frame.start_line))

    def mapping(self, frame: Frame) -> int:
        """Index of the frame's Mapping, 0 for frames outside any file (Python, errors)."""
        if frame.kind is FrameKind.NATIVE and frame.mapping is not None:
            return self.mappings.add(frame.mapping)
        if frame.kind is FrameKind.KERNEL:
            low, high = self.kernel_range
            self.kernel_range = [
                frame.address if low == 0 else min(low, frame.address),
                max(high, frame.address + 1),
            ]
            return self.mappings.add(_KERNEL)
        return 0

    def location(self, group: tuple[Frame, ...]) -> int:
        """Index of the Location of one physical frame and its inlined callees (innermost line first)."""
        head = group[0]
        lines = tuple((self.function(frame), frame.line) for frame in reversed(group))
        frame_type = FRAME_TYPES.get(head.kind)
        attributes = (self.attribute(ATTR_FRAME_TYPE, frame_type),) if frame_type else ()
        return self.locations.add((self.mapping(head), head.address, lines, attributes))

    def stack(self, stack: Stack) -> int:
        """Index of the Stack (leaf first) of a model stack (root first)."""
        index = self.stack_cache.get(stack)
        if index is None:
            groups = physical_frames(call_frames(stack))
            index = self.stack_cache[stack] = self.stacks.add(
                tuple(self.location(g) for g in reversed(groups))
            )
        return index

    def mapping_message(self, key: _MappingKey | None) -> otlp.Mapping:
        """The Mapping table entry for one key."""
        if key is None:
            return otlp.Mapping()
        if isinstance(key, Mapping):
            attributes = [self.attribute(ATTR_FILE_ID, key.file_id)] if key.file_id else []
            if key.build_id:
                attributes.append(self.attribute(ATTR_BUILD_ID, key.build_id))
            return otlp.Mapping(
                memory_start=key.start,
                memory_limit=key.limit,
                file_offset=key.offset,
                filename_strindex=self.strings.add(key.path),
                attribute_indices=attributes,
            )
        return otlp.Mapping(
            memory_start=self.kernel_range[0],
            memory_limit=self.kernel_range[1],
            filename_strindex=self.strings.add(KERNEL_MAPPING_NAME),
        )

    def message(self) -> otlp.ProfilesDictionary:
        """Emit every table; the string and attribute tables last, as the others add to them."""
        out = otlp.ProfilesDictionary()
        out.link_table.add()
        out.mapping_table.extend(self.mapping_message(key) for key in self.mappings.keys)
        for key in self.locations.keys:
            location = out.location_table.add()
            if key is not None:
                mapping_index, address, lines, attributes = key
                location.mapping_index = mapping_index
                location.address = address
                location.attribute_indices.extend(attributes)
                for function_index, line in lines:
                    location.lines.add(function_index=function_index, line=line)
        for key in self.functions.keys:
            function = out.function_table.add()
            if key is not None:
                name, system_name, filename, start_line = key
                function.name_strindex = self.strings.add(name)
                function.system_name_strindex = self.strings.add(system_name)
                function.filename_strindex = self.strings.add(filename)
                function.start_line = start_line
        out.stack_table.extend(otlp.Stack(location_indices=key) for key in self.stacks.keys)
        for key in self.attributes.keys:
            attribute = out.attribute_table.add()
            if key is not None:
                attribute.key_strindex = self.strings.add(key[0])
                attribute.value.CopyFrom(_any_value(key[1]))
        out.string_table.extend(self.strings.keys)
        return out


def _sample_attributes(sample: Sample) -> list[tuple[str, _Scalar]]:
    """thread.id, thread.name and, when the samples ran on a single CPU, cpu.logical_number."""
    pairs: list[tuple[str, _Scalar]] = [(ATTR_THREAD_ID, sample.tid), (ATTR_THREAD_NAME, sample.thread_name)]
    if len(sample.cpus) == 1:
        pairs.append((ATTR_CPU, next(iter(sample.cpus))))
    return pairs


def _resource_attributes(key: _ProcessKey, hostname: str) -> list[KeyValue]:
    """Resource attributes of one process."""
    pid, process_name, container_id = key
    pairs: list[tuple[str, _Scalar]] = [("process.pid", pid), ("process.executable.name", process_name)]
    if hostname:
        pairs.append(("host.name", hostname))
    if container_id:
        pairs.append(("container.id", container_id))
    return [KeyValue(key=name, value=_any_value(value)) for name, value in pairs]


def _profile_message(
    profile: Profile, aggregates: dict[_SampleKey, _Aggregate], strings: StringTable
) -> otlp.Profile:
    """One process's Profile: header fields plus its samples (timestamps only when complete)."""
    out = otlp.Profile(
        time_unix_nano=profile.start_time_ns,
        duration_nano=profile.duration_ns,
        period=profile.period_ns,
    )
    out.sample_type.type_strindex = strings.add(SAMPLE_TYPE[0])
    out.sample_type.unit_strindex = strings.add(SAMPLE_TYPE[1])
    out.period_type.type_strindex = strings.add(PERIOD_TYPE[0])
    out.period_type.unit_strindex = strings.add(PERIOD_TYPE[1])
    for (stack_index, attributes), aggregate in aggregates.items():
        sample = out.samples.add(stack_index=stack_index, attribute_indices=attributes)
        if aggregate.timed:
            sample.timestamps_unix_nano.extend(sorted(aggregate.timestamps))
        else:
            sample.values.append(aggregate.count)
    return out


def to_otlp_request(profile: Profile) -> ExportProfilesServiceRequest:
    """Convert a Profile into one OTLP ExportProfilesServiceRequest (resource per process)."""
    dictionary = _Dictionary()
    processes: dict[_ProcessKey, dict[_SampleKey, _Aggregate]] = {}
    for sample in profile.samples:
        if sample.count <= 0:
            continue
        process = (sample.pid, sample.process_name, sample.container_id)
        key = (dictionary.stack(sample.stack), dictionary.attribute_set(_sample_attributes(sample)))
        processes.setdefault(process, {}).setdefault(key, _Aggregate()).add(sample)
    request = ExportProfilesServiceRequest()
    scope = InstrumentationScope(name="fleetprof", version=__version__)
    for process in sorted(processes):
        resource_profiles = request.resource_profiles.add()
        resource_profiles.resource.attributes.extend(_resource_attributes(process, profile.hostname))
        scope_profiles = resource_profiles.scope_profiles.add(scope=scope)
        scope_profiles.profiles.append(_profile_message(profile, processes[process], dictionary.strings))
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
